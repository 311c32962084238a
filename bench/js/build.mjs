// Bundles the benchmark and measures minified + gzipped sizes with esbuild's metafile.
import { gzipSync } from "node:zlib";
import { build } from "esbuild";

// Peers load from node_modules as apps load them; flagstone is bundled from its TS source.
await build({ entryPoints: ["runtime.ts"], bundle: true, packages: "external", platform: "node", format: "esm", outfile: "dist/runtime.mjs", logLevel: "error" });

// Size of what an app ships for `entry`: minified for browsers, `external` left out, gzipped.
async function size(name, contents, external = []) {
  const result = await build({
    stdin: { contents, resolveDir: process.cwd(), loader: "ts" },
    bundle: true,
    minify: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    write: false,
    metafile: true,
    external,
    logLevel: "error",
  });
  const code = result.outputFiles[0].contents;
  return { name, minified: code.length, gzip: gzipSync(code, { level: 9 }).length };
}

const core = "../../clients/js/src";
const sizes = [
  await size("@flagstone/client (core: Client, evaluator, polling, signatures)", `export { Client } from "${core}/index.ts";`),
  await size("@flagstone/client/react (beyond the core and React)", `export * from "${core}/react.tsx";`, ["react", "*/client.js", "*/operators.js", "*/evaluate.js"]),
  await size("@growthbook/growthbook (GrowthBookClient)", `export { GrowthBookClient } from "@growthbook/growthbook";`),
  await size("@growthbook/growthbook (GrowthBook)", `export { GrowthBook } from "@growthbook/growthbook";`),
  await size("@featurevisor/sdk (createInstance)", `export { createInstance } from "@featurevisor/sdk";`),
  await size("@openfeature/flagd-core (FlagdCore)", `export { FlagdCore } from "@openfeature/flagd-core";`),
];
console.log(JSON.stringify(sizes));
