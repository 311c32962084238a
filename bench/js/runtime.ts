// The JavaScript runtime benchmark (run by bench/js_runtime.py): flagstone's TypeScript
// client against the JS peer SDKs on bench/runtime.py's two workloads, same contexts, same
// run, interleaved rounds. Prints one JSON object: per SDK, median ns per call and the share
// of contexts served `on` (equal shares show the SDKs answer the same flag).
import { readFileSync } from "node:fs";
import { GrowthBookClient } from "@growthbook/growthbook";
import { createInstance } from "@featurevisor/sdk";
import { FlagdCore } from "@openfeature/flagd-core";
import { Client } from "../../clients/js/src/full.js";

type Ctx = Record<string, string>;
type Sdk = { name: string; flag: (c: Ctx) => unknown; arm: (c: Ctx) => unknown };
const [bundlePath, contextsPath, callsArg, roundsArg] = process.argv.slice(2);
const bundle = JSON.parse(readFileSync(bundlePath, "utf8"));
const contexts: Ctx[] = JSON.parse(readFileSync(contextsPath, "utf8"));
const calls = Number(callsArg);
const rounds = Number(roundsArg);

function flagstone(): Sdk {
  const client = new Client({ bundle });
  return { name: "flagstone (TypeScript)", flag: (c) => client.variant("checkout", c) === "on", arm: (c) => client.assign("onboarding-test", c) };
}

function growthbook(): Sdk {
  const features = {
    checkout: {
      defaultValue: false,
      rules: [
        { condition: { email: { $regex: "@isometry\\.app$" } }, force: true },
        { condition: { country: { $in: ["DE", "FR", "NL"] }, plan: "pro" }, force: true },
        { coverage: 0.3, force: true, hashAttribute: "user_id" },
      ],
    },
    onboarding: {
      defaultValue: "a",
      rules: [{ key: "onboarding-test", variations: ["a", "b", "c"], weights: [0.34, 0.33, 0.33], hashAttribute: "user_id" }],
    },
  };
  const gb = new GrowthBookClient().initSync({ payload: { features } as any });
  const users = new Map<Ctx, { attributes: Ctx }>();
  const user = (c: Ctx) => users.get(c) ?? (users.set(c, { attributes: c }), users.get(c)!);
  return { name: "@growthbook/growthbook", flag: (c) => gb.isOn("checkout", user(c)), arm: (c) => gb.getFeatureValue("onboarding", "a", user(c)) };
}

function featurevisor(): Sdk {
  const datafile = {
    schemaVersion: "2",
    revision: "1",
    segments: {
      staff: { key: "staff", conditions: [{ attribute: "email", operator: "endsWith", value: "@isometry.app" }] },
      "eu-pro": {
        key: "eu-pro",
        conditions: [
          { attribute: "country", operator: "in", value: ["DE", "FR", "NL"] },
          { attribute: "plan", operator: "equals", value: "pro" },
        ],
      },
    },
    features: {
      checkout: {
        key: "checkout",
        bucketBy: "user_id",
        traffic: [
          { key: "staff", segments: ["staff"], percentage: 100000 },
          { key: "eu-pro", segments: ["eu-pro"], percentage: 100000 },
          { key: "everyone", segments: "*", percentage: 30000 },
        ],
      },
      onboarding: {
        key: "onboarding",
        bucketBy: "user_id",
        variations: [{ value: "a" }, { value: "b" }, { value: "c" }],
        traffic: [
          {
            key: "everyone",
            segments: "*",
            percentage: 100000,
            allocation: [
              { variation: "a", range: [0, 34000] },
              { variation: "b", range: [34000, 67000] },
              { variation: "c", range: [67000, 100000] },
            ],
          },
        ],
      },
    },
  };
  const f = createInstance({ datafile: datafile as any, logLevel: "error" });
  return { name: "@featurevisor/sdk", flag: (c) => f.isEnabled("checkout", c), arm: (c) => f.getVariation("onboarding", c) };
}

function flagd(): Sdk {
  const core = new FlagdCore();
  core.setConfigurations(
    JSON.stringify({
      flags: {
        checkout: {
          state: "ENABLED",
          variants: { on: true, off: false },
          defaultVariant: "off",
          targeting: {
            if: [
              { ends_with: [{ var: "email" }, "@isometry.app"] },
              "on",
              { and: [{ in: [{ var: "country" }, ["DE", "FR", "NL"]] }, { "==": [{ var: "plan" }, "pro"] }] },
              "on",
              { fractional: [["on", 30], ["off", 70]] },
            ],
          },
        },
        onboarding: { state: "ENABLED", variants: { a: "a", b: "b", c: "c" }, defaultVariant: "a", targeting: { fractional: [["a", 34], ["b", 33], ["c", 33]] } },
      },
    }),
  );
  const ofContexts = new Map<Ctx, Record<string, string>>();
  const ctx = (c: Ctx) => ofContexts.get(c) ?? (ofContexts.set(c, { ...c, targetingKey: c.user_id }), ofContexts.get(c)!);
  return {
    name: "@openfeature/flagd-core",
    flag: (c) => core.resolveBooleanEvaluation("checkout", false, ctx(c)).value,
    arm: (c) => core.resolveStringEvaluation("onboarding", "a", ctx(c)).value,
  };
}

// CPU time of the process (user + system), not wall time: on a shared machine the wall clock
// also counts the time other processes held the core.
function timePerCall(fn: (c: Ctx) => unknown): number {
  const n = contexts.length;
  const started = process.cpuUsage();
  for (let i = 0; i < calls; i++) fn(contexts[i % n]);
  const { user, system } = process.cpuUsage(started);
  return ((user + system) * 1000) / calls;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

const sdks = [flagstone(), growthbook(), featurevisor(), flagd()];
const results = sdks.map((sdk) => ({
  name: sdk.name,
  share: contexts.filter((c) => sdk.flag(c) === true).length / contexts.length,
  arms: Object.fromEntries(["a", "b", "c"].map((a) => [a, contexts.filter((c) => sdk.arm(c) === a).length / contexts.length])),
  flag: [] as number[],
  assign: [] as number[],
}));
for (const sdk of sdks) for (let i = 0; i < 3; i++) (timePerCall(sdk.flag), timePerCall(sdk.arm)); // warm the JIT
for (let r = 0; r < rounds; r++)
  sdks.forEach((sdk, i) => {
    results[i].flag.push(timePerCall(sdk.flag));
    results[i].assign.push(timePerCall(sdk.arm));
  });
console.log(JSON.stringify({ node: process.version, calls, rounds, sdks: results.map((r) => ({ ...r, flag: median(r.flag), assign: median(r.assign) })) }));
