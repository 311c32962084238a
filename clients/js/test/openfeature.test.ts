import { OpenFeature, ProviderEvents, ProviderStatus } from "@openfeature/web-sdk";
import { afterEach, describe, expect, it, vi } from "vitest";
import { Client } from "../src/full.js";
import { FlagstoneWebProvider } from "../src/openfeature.js";
import { readVectors } from "./vectors.js";

const vectors = readVectors("vectors.json");
const bundle = vectors.bundle;

afterEach(async () => {
  await OpenFeature.clearProviders();
  await OpenFeature.setContext({});
  OpenFeature.clearHandlers();
});

describe("FlagstoneWebProvider under @openfeature/web-sdk", () => {
  it("answers every typed getter as the client does, with OpenFeature's reasons", async () => {
    await OpenFeature.setProviderAndWait(new FlagstoneWebProvider(new Client({ bundle })));
    await OpenFeature.setContext({ targetingKey: "qa-1", plan: "pro", device: { os: "ios" } });
    const of = OpenFeature.getClient();
    expect(of.getBooleanDetails("op-eq", false)).toMatchObject({ value: true, variant: "yes", reason: "TARGETING_MATCH", flagMetadata: { flagstone_reason: "RULE_MATCH", rule: 0 } });
    expect(of.getBooleanDetails("targets", false)).toMatchObject({ value: true, reason: "TARGETING_MATCH", flagMetadata: { flagstone_reason: "TARGET_MATCH" } });
    expect(of.getStringValue("op-starts-ends", "x")).toBe("n");
    expect(of.getNumberDetails("rollout-edge", -1)).toMatchObject({ value: 1, reason: "TARGETING_MATCH" });
    expect(of.getObjectValue("json-payload", {})).toEqual({ columns: 1, density: "high" });
    expect(of.getBooleanDetails("killed", true)).toMatchObject({ value: false, reason: "DISABLED" });
    expect(of.getBooleanDetails("killed-no-off", true)).toMatchObject({ value: true, reason: "DISABLED" });
    expect(of.getBooleanDetails("rollout-default", false).reason).toBe("SPLIT");
  });

  it("reports a missing flag, a type mismatch and an unbucketable context as errors with the default", async () => {
    await OpenFeature.setProviderAndWait(new FlagstoneWebProvider(new Client({ bundle })));
    const of = OpenFeature.getClient();
    expect(of.getBooleanDetails("nope", true)).toMatchObject({ value: true, errorCode: "FLAG_NOT_FOUND", reason: "ERROR" });
    expect(of.getStringDetails("op-eq", "d")).toMatchObject({ value: "d", errorCode: "TYPE_MISMATCH" });
    expect(of.getBooleanDetails("rollout-default", true)).toMatchObject({ value: true, errorCode: "GENERAL" });
  });

  it("agrees with the shared vectors when the targeting key is the unit", async () => {
    await OpenFeature.setProviderAndWait(new FlagstoneWebProvider(new Client({ bundle })));
    const of = OpenFeature.getClient();
    const cases = vectors.flags.filter((c: any) => typeof c.context.user_id === "string" && typeof c.value === "boolean").slice(0, 200);
    for (const c of cases) {
      const { user_id, ...rest } = c.context;
      await OpenFeature.setContext({ targetingKey: user_id, ...rest });
      expect(of.getBooleanValue(c.flag, !c.value)).toBe(c.value);
    }
  });

  it("emits PROVIDER_CONFIGURATION_CHANGED with the changed flags on a new bundle", async () => {
    const client = new Client({ bundle });
    await OpenFeature.setProviderAndWait(new FlagstoneWebProvider(client));
    const changed = vi.fn();
    OpenFeature.getClient().addHandler(ProviderEvents.ConfigurationChanged, changed);
    const next = structuredClone(bundle);
    next.flags["op-eq"].default = { variant: "yes" };
    next.hash = `sha256:${"3".repeat(64)}`;
    await client.load(next);
    await vi.waitFor(() => expect(changed).toHaveBeenCalledOnce());
    expect(changed.mock.calls[0][0]).toMatchObject({ flagsChanged: ["op-eq"] });
    expect(OpenFeature.getClient().getBooleanValue("op-eq", false)).toBe(true);
  });

  it("a provider whose first fetch failed becomes ready when a bundle arrives", async () => {
    let body = "truncated {";
    const client = new Client({ url: "/b.json", pollInterval: 10, onError: () => {}, fetch: async () => new Response(body) });
    const provider = new FlagstoneWebProvider(client);
    await OpenFeature.setProviderAndWait(provider).catch(() => {});
    expect(OpenFeature.getClient().providerStatus).toBe(ProviderStatus.ERROR);
    body = JSON.stringify(bundle);
    await vi.waitFor(() => expect(OpenFeature.getClient().providerStatus).toBe(ProviderStatus.READY));
    client.close();
  });

  it("logs an experiment exposure once per unit however often the flag is read", async () => {
    const onExposure = vi.fn();
    await OpenFeature.setProviderAndWait(new FlagstoneWebProvider(new Client({ bundle, onExposure })));
    const enrolled = vectors.assignments.find((a: any) => a.experiment === "onboarding" && a.arm !== null);
    const { user_id, ...rest } = enrolled.context;
    await OpenFeature.setContext({ targetingKey: String(user_id), ...rest });
    for (let i = 0; i < 3; i++) expect(OpenFeature.getClient().getStringValue("onboarding-flow", "x")).toBe(bundle.flags["onboarding-flow"].variants[enrolled.arm]);
    expect(onExposure).toHaveBeenCalledOnce();
  });
});
