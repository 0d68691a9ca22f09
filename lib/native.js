'use strict';
// The compiled addon (see addon-loader.js for where it is looked for).
module.exports = require('./addon-loader').load().binding;
