'use strict';
// BullMQ sandboxed processor (a processor file: BullMQ runs it in its own child
// processes). The same no-op task as every other pool: echo the payload.
const tasks = require('./tasks.js');

module.exports = async (job) => tasks.echo(job.data);
