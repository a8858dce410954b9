// Prints the core addon's C++ sources for binding.gyp: native/core/*.cpp and native/cpu/*.cpp,
// minus the ISA-specific microkernels, which binding.gyp builds as separate static libraries.
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');
const isaKernel = /_kernel_avx(2|512)\.cpp$/;
const sources = ['native/core', 'native/cpu'].flatMap((dir) =>
  fs
    .readdirSync(path.join(root, dir))
    .filter((name) => name.endsWith('.cpp') && !isaKernel.test(name))
    .sort()
    .map((name) => `${dir}/${name}`),
);
console.log(sources.join(' '));
