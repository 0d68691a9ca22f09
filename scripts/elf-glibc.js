'use strict';
// The glibc symbol versions a shared object needs, read from its ELF version-needs
// section (.gnu.version_r): the list the dynamic linker checks at load time, and what
// `objdump -T` summarises. No binutils needed, so the release build checks its own output.
const fs = require('node:fs');

const SHT_GNU_VERNEED = 0x6ffffffe;

/** The `GLIBC_x.y[.z]` versions `file` requires, sorted ascending. 64-bit little-endian ELF only. */
function glibcVersionsNeeded(file) {
  const b = fs.readFileSync(file);
  if (b.readUInt32BE(0) !== 0x7f454c46) throw new Error(`${file} is not an ELF file`);
  if (b[4] !== 2 || b[5] !== 1) throw new Error(`${file} is not a 64-bit little-endian ELF file`);
  const shoff = Number(b.readBigUInt64LE(0x28));
  const shentsize = b.readUInt16LE(0x3a);
  const shnum = b.readUInt16LE(0x3c);
  const section = (i) => {
    const o = shoff + i * shentsize;
    return {
      type: b.readUInt32LE(o + 4),
      offset: Number(b.readBigUInt64LE(o + 0x18)),
      link: b.readUInt32LE(o + 0x28),
      info: b.readUInt32LE(o + 0x2c),
    };
  };
  const cstr = (at) => b.toString('latin1', at, b.indexOf(0, at));
  const versions = new Set();
  for (let i = 0; i < shnum; i++) {
    const s = section(i);
    if (s.type !== SHT_GNU_VERNEED) continue;
    const strtab = section(s.link).offset;
    // sh_info holds the number of Verneed entries; each has a chain of Vernaux entries.
    let need = s.offset;
    for (let n = 0; n < s.info; n++) {
      const cnt = b.readUInt16LE(need + 2);
      let aux = need + b.readUInt32LE(need + 8);
      for (let a = 0; a < cnt; a++) {
        const name = cstr(strtab + b.readUInt32LE(aux + 8));
        if (/^GLIBC_\d+(\.\d+)*$/.test(name)) versions.add(name.slice('GLIBC_'.length));
        aux += b.readUInt32LE(aux + 12);
      }
      need += b.readUInt32LE(need + 12);
    }
  }
  return [...versions].sort(compareVersions);
}

function compareVersions(a, b) {
  const x = a.split('.').map(Number);
  const y = b.split('.').map(Number);
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    const d = (x[i] || 0) - (y[i] || 0);
    if (d) return d;
  }
  return 0;
}

/** The highest glibc version `file` needs, e.g. '2.17', or null when it needs none. */
function maxGlibcNeeded(file) {
  const v = glibcVersionsNeeded(file);
  return v.length ? v[v.length - 1] : null;
}

module.exports = { glibcVersionsNeeded, maxGlibcNeeded, compareVersions };
