// The page's self-test (flsignal/web/selftest.js) under Node's WebCrypto:
// the signed-setup and sealed-setup vectors of flproto, reproduced and
// opened without a browser. Run by tests/tests/browser.rs; prints the
// result as JSON and exits 0 if it held.

import { run } from '../../flsignal/web/selftest.js';

const result = await run();
console.log(JSON.stringify(result));
process.exitCode = result.ok ? 0 : 1;
