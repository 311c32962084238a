// Evaluate flagd flag definitions with @openfeature/flagd-core, all cases in one process.
// stdin: {"flags": <flagd document>, "cases": [{"flag": key, "type": "string"|..., "default": v,
//          "targetingKey": str|null, "attributes": {...}}]}; a case may name a shared context
//        instead ("context": i, an index into "contexts": [{"targetingKey", "attributes"}]).
//        "strict": true checks the document against flagd's flag and targeting schemas first.
// stdout: one JSON array, per case {"value", "variant", "reason", "errorCode"};
//         or, when the strict check fails, {"invalid": message} and exit code 3.
import { readFileSync } from 'node:fs';
import { FlagdCore, MemoryStorage } from '@openfeature/flagd-core';

const quiet = { error() {}, warn() {}, info() {}, debug() {} };
const input = JSON.parse(readFileSync(0, 'utf8'));
if (input.strict) {
  try {
    new MemoryStorage(quiet).setConfigurations(JSON.stringify(input.flags), true);
  } catch (e) {
    process.stdout.write(JSON.stringify({ invalid: String(e.message) }));
    process.exit(3);
  }
}
const core = new FlagdCore(undefined, quiet);
core.setConfigurations(JSON.stringify(input.flags));
const results = input.cases.map((c) => {
  const shared = typeof c.context === 'number' ? input.contexts[c.context] : c;
  const context = { ...shared.attributes };
  if (shared.targetingKey !== null && shared.targetingKey !== undefined) context.targetingKey = shared.targetingKey;
  try {
    const r = core.resolve(c.type, c.flag, c.default, context, quiet);
    return { value: r.value ?? null, variant: r.variant ?? null, reason: r.reason ?? null, errorCode: r.errorCode ?? null };
  } catch (e) {
    return { value: c.default, variant: null, reason: 'ERROR', errorCode: e.code ?? e.name ?? 'GENERAL' };
  }
});
process.stdout.write(JSON.stringify(results));
