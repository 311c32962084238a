// Bundles the benchmark and measures minified + gzipped sizes with esbuild's metafile.
import { gzipSync } from "node:zlib";
import { build } from "esbuild";

// Peers load from node_modules as apps load them; flagstone is bundled from its TS source.
await build({ entryPoints: ["runtime.ts"], bundle: true, packages: "external", platform: "node", format: "esm", outfile: "dist/runtime.mjs", logLevel: "error" });

/**
 * What an app downloads for `contents`: minified for browsers, gzipped, `external` left out.
 * `initial` counts the chunks reached by static imports; `lazy` what a dynamic import
 * fetches later (flagstone's async paths, loaded on the first watch() or load(), the parts
 * they import for the bundle, and the signature check, loaded only for signed bundles).
 */
async function size(name, contents, external = []) {
  const result = await build({
    stdin: { contents, resolveDir: process.cwd(), loader: "ts" },
    bundle: true,
    minify: true,
    splitting: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    outdir: "dist/size",
    write: false,
    metafile: true,
    external,
    logLevel: "error",
  });
  const outputs = result.metafile.outputs;
  const gzip = (path) => gzipSync(result.outputFiles.find((f) => f.path.endsWith(path.split("/").pop())).contents, { level: 9 }).length;
  const initial = new Set();
  const walk = (path) => {
    if (initial.has(path)) return;
    initial.add(path);
    for (const i of outputs[path].imports) if (i.kind === "import-statement" && outputs[i.path]) walk(i.path);
  };
  walk(Object.keys(outputs).find((path) => outputs[path].entryPoint === "<stdin>"));
  const sum = (paths, f) => paths.reduce((n, p) => n + f(p), 0);
  const lazy = Object.keys(outputs).filter((p) => !initial.has(p));
  return {
    name,
    minified: sum([...initial], (p) => outputs[p].bytes),
    gzip: sum([...initial], gzip),
    lazyGzip: sum(lazy, gzip),
    lazyMinified: sum(lazy, (p) => outputs[p].bytes),
  };
}

const core = "../../clients/js/src";
const sizes = [
  await size("@flagstone/client (Client: the core; flags with targets, rules, rollouts and the comparison operators, details, exposures, config, bundles from objects)", `export { Client } from "${core}/index.ts";`),
  await size("@flagstone/client with /experiments (the core and experiments: layers, traffic, audience, exposure records)", `import "${core}/experiments.ts"; export { Client } from "${core}/index.ts";`),
  await size("@flagstone/client/full (the core with every part: dates, semver, regex, experiments, prerequisites, consent counts)", `export { Client } from "${core}/full.ts";`),
  await size("@flagstone/client/react (beyond the core and React)", `export * from "${core}/react.tsx";`, ["react", "*/client.js", "*/operators.js", "*/evaluate.js", "*/hashing.js", "*/errors.js"]),
  await size("@growthbook/growthbook (GrowthBookClient)", `export { GrowthBookClient } from "@growthbook/growthbook";`),
  await size("@growthbook/growthbook (GrowthBook)", `export { GrowthBook } from "@growthbook/growthbook";`),
  await size("@featurevisor/sdk (createInstance)", `export { createInstance } from "@featurevisor/sdk";`),
  await size("@openfeature/flagd-core (FlagdCore)", `export { FlagdCore } from "@openfeature/flagd-core";`),
];
console.log(JSON.stringify(sizes));
