// Two versions of the TypeScript client's source against each other, alternating in one Node
// process: CPU time per call (process.cpuUsage) of bench/runtime.py's flag and 3-arm
// assignment, median of the rounds, so a size change can show it costs no speed.
//
//   git worktree add /tmp/before <commit>     (or any copy of clients/js/src)
//   .venv/bin/python bench/js_runtime.py --no-write   (writes nothing; builds dist/ once)
//   node bench/js/ab.mjs /tmp/before/clients/js/src clients/js/src BUNDLE.json CONTEXTS.json
//
// BUNDLE.json and CONTEXTS.json as bench/js_runtime.py writes them (bench/runtime.py's
// flagstone_bundle and make_contexts). Prints one JSON line: median ns per call of each.
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { build } from "esbuild";

const [before, after, bundlePath, contextsPath, callsArg = "200000", roundsArg = "9"] = process.argv.slice(2);
const load = async (src) => {
  const out = await build({ stdin: { contents: `export { Client } from ${JSON.stringify(resolve(src, "full.ts"))};`, resolveDir: process.cwd(), loader: "ts" }, bundle: true, platform: "node", format: "esm", write: false, logLevel: "error" });
  return (await import(`data:text/javascript;base64,${Buffer.from(out.outputFiles[0].contents).toString("base64")}`)).Client;
};
const bundle = JSON.parse(readFileSync(bundlePath, "utf8"));
const contexts = JSON.parse(readFileSync(contextsPath, "utf8"));
const calls = Number(callsArg);
const rounds = Number(roundsArg);
const make = (Client) => {
  const client = new Client({ bundle });
  return { flag: (c) => client.variant("checkout", c) === "on", assign: (c) => client.assign("onboarding-test", c) };
};
const versions = { before: make(await load(before)), after: make(await load(after)) };
const times = { before: { flag: [], assign: [] }, after: { flag: [], assign: [] } };
const cpu = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) * 1000;
};
let sink = 0;
// Two warm-up rounds; then each round runs both, in alternating order.
for (let r = -2; r < rounds; r++)
  for (const name of r % 2 ? ["before", "after"] : ["after", "before"])
    for (const workload of ["flag", "assign"]) {
      const f = versions[name][workload];
      const t = cpu();
      for (let i = 0; i < calls; i++) if (f(contexts[i % contexts.length])) sink++;
      if (r >= 0) times[name][workload].push((cpu() - t) / calls);
    }
const median = (xs) => xs.sort((a, b) => a - b)[xs.length >> 1];
const result = Object.fromEntries(Object.entries(times).map(([k, v]) => [k, { flag: Math.round(median(v.flag)), assign: Math.round(median(v.assign)) }]));
console.log(JSON.stringify({ ...result, calls, rounds, checksum: sink }));
