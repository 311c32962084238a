// The built package as an app imports it (package.json "exports", by its own name), in
// plain Node: every entry point loads, answers a shared vector and verifies a signed bundle.
// The vectors use every part: the parts' entry points add them to the core.
import { readFileSync } from "node:fs";
import { Client } from "@flagstone/client";
import "@flagstone/client/consent";
import "@flagstone/client/dates";
import "@flagstone/client/experiments";
import "@flagstone/client/prerequisites";
import "@flagstone/client/regex";
import { Client as FullClient } from "@flagstone/client/full";
import "@flagstone/client/semver";
import { FlagstoneWebProvider } from "@flagstone/client/openfeature";
import { FeatureFlagProvider, useVariant } from "@flagstone/client/react";
import { bundleHash, verifyBundle } from "@flagstone/client/verify";

const conformance = new URL("../../../tests/conformance/", import.meta.url);
const vectors = JSON.parse(readFileSync(new URL("vectors.json", conformance), "utf8"));
const signed = JSON.parse(readFileSync(new URL("hash-vectors.json", conformance), "utf8")).bundles[0];
let failed = 0;
const check = (what, ok) => {
  if (!ok) console.error(`package smoke: ${what} failed`);
  failed += ok ? 0 : 1;
};
const client = new Client({ bundle: vectors.bundle });
const sample = vectors.flags.filter((_, i) => i % 97 === 0);
check("every sampled vector", sample.every((c) => client.details(c.flag, c.context).variant === c.variant));
check("every sampled assignment", vectors.assignments.filter((_, i) => i % 31 === 0).every((a) => client.arm(a.experiment, a.context) === a.arm));
check("the full entry", FullClient === Client);
check("the react entry", typeof FeatureFlagProvider === "function" && typeof useVariant === "function");
check("the openfeature entry", new FlagstoneWebProvider(client).metadata.name === "flagstone");
const bundle = JSON.parse(signed.file);
check("the bundle hash", (await bundleHash(bundle)) === signed.hash);
await verifyBundle(bundle, Uint8Array.from(Buffer.from(signed.public_key, "hex")));
const withKey = new Client({ bundle, publicKey: Uint8Array.from(Buffer.from(signed.public_key, "hex")) });
check("a signed bundle going live", (await withKey.ready) === true);
console.log(failed ? `package smoke: ${failed} of 7 checks failed` : "package smoke: the built entry points load and answer");
process.exit(failed ? 1 : 0);
