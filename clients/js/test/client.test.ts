import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { type Server, createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { Client, type ChangeEvent } from "../src/full.js";
import { readVectors } from "./vectors.js";

const bundle = readVectors("vectors.json").bundle;
const variantOf = (b: any, flag: string, variant: string, hash: string): any => {
  const next = structuredClone(b);
  next.flags[flag].default = { variant };
  next.hash = `sha256:${hash.repeat(64)}`;
  return next;
};

/** A bundle server on localhost whose answers a test scripts. */
function serve(): { url: Promise<string>; body: string; status: number; requests: { etag?: string }[]; server: Server } {
  const state = {
    body: JSON.stringify(bundle),
    status: 200,
    requests: [] as { etag?: string }[],
    server: createServer((req, res) => {
      state.requests.push({ etag: req.headers["if-none-match"] as string | undefined });
      const etag = `"${createHash("sha256").update(state.body).digest("hex")}"`;
      if (state.status !== 200) return void res.writeHead(state.status).end("nope");
      if (req.headers["if-none-match"] === etag) return void res.writeHead(304).end();
      res.writeHead(200, { ETag: etag, "Content-Type": "application/json" }).end(state.body);
    }),
    url: null as unknown as Promise<string>,
  };
  state.url = new Promise((resolve) => state.server.listen(0, "127.0.0.1", () => resolve(`http://127.0.0.1:${(state.server.address() as AddressInfo).port}/prod.json`)));
  return state;
}

let open: { server: Server; client?: Client }[] = [];
afterEach(() => {
  for (const o of open) {
    o.client?.close();
    o.server.close();
  }
  open = [];
});
const waitFor = (check: () => boolean, ms = 2000): Promise<void> => vi.waitFor(() => expect(check()).toBe(true), { timeout: ms, interval: 10 });

describe("Client from an object", () => {
  it("answers synchronously, and never throws into the app", () => {
    const client = new Client({ bundle });
    expect(client.variant("op-eq", { plan: "pro" })).toBe("yes");
    expect(client.enabled("op-eq", { plan: "pro" })).toBe(true);
    expect(client.variant("nope" as string, {}, "dflt")).toBe("dflt");
    expect(client.details("nope", {}, 7)).toMatchObject({ value: 7, reason: "FLAG_NOT_FOUND" });
    expect(client.details("rollout-default", {}, "dflt")).toMatchObject({ value: "dflt", reason: "ERROR" });
    // hostile contexts: null (an ERROR, as in Python), a getter that throws, a lone surrogate, inherited names
    expect(client.details("op-eq", null as any, "dflt")).toMatchObject({ value: "dflt", reason: "ERROR" });
    const trap = Object.defineProperty({}, "plan", { get: () => { throw new Error("boom"); } });
    expect(client.details("op-eq", trap, "dflt")).toMatchObject({ value: "dflt", reason: "ERROR", message: "Error: boom" });
    expect(client.value("rollout-default", { user_id: "\udc00" }, "dflt")).toBe("dflt");
    expect(client.variant("op-eq", { plan: "pro", constructor: 1 })).toBe("yes");
  });

  it("a broken bundle leaves the client answering defaults, with the reason", () => {
    const onError = vi.fn();
    const client = new Client({ bundle: '{"format": "flagstone-bundle", "version": 1, "flags": {"x": ', onError });
    expect(client.variant("x", {}, "dflt")).toBe("dflt");
    expect(client.lastError).toMatch(/^not valid JSON \(truncated or corrupt\)/);
    expect(onError).toHaveBeenCalledOnce();
    expect(new Client({ bundle: { format: "other" }, onError }).lastError).toBe("not a flagstone bundle (format field)");
  });

  it("a matches condition runs the bundle's ECMAScript form; without one it answers ERROR", () => {
    const ctx = { email: "ann@isometry.app" };
    expect(new Client({ bundle }).details("op-matches", ctx)).toMatchObject({ variant: "yes", reason: "RULE_MATCH" });
    for (const form of [null, undefined]) {
      const b = structuredClone(bundle);
      b.flags["op-matches"].rules[0].when.ecmascript = form; // untranslatable, or a bundle from an older build
      const r = new Client({ bundle: b }).details("op-matches", ctx, "dflt");
      expect(r).toMatchObject({ value: "dflt", reason: "ERROR" });
      expect(r.message).toMatch(/has no ECMAScript form/);
      expect(new Client({ bundle: b }).variant("op-matches", { email: 42 })).toBe("no"); // not a string: no match, no error
    }
  });

  it("an operand of a type the schema refuses (and so the Python runtime) gives an answer, never an exception", () => {
    const wrong: [string, unknown][] = [["starts_with", 3], ["ends_with", null], ["gt", "10"], ["lte", true], ["exists", []], ["in", "DEU"], ["not_in", { DE: 1 }], ["contains", 1]];
    const b = structuredClone(bundle);
    for (const [op, value] of wrong) b.flags[`wrong-${op}`] = { ...b.flags["op-eq"], rules: [{ when: { attr: "a", op, value }, serve: { variant: "yes" } }] };
    // The Python runtime refuses the bundle at load (schemas/bundle.schema.json).
    const python = process.env.FLAGSTONE_PYTHON ?? join(process.cwd(), "..", "..", ".venv", "bin", "python");
    const script = "import json, sys\nfrom flagstone.runtime import Client\ntry:\n    Client.from_dict(json.load(sys.stdin))\nexcept Exception as e:\n    print(type(e).__name__, e)";
    expect(execFileSync(python, ["-c", script], { input: JSON.stringify(b), encoding: "utf8" })).toMatch(/^BundleError flag 'wrong-starts_with': .* an operand of its type/);
    const client = new Client({ bundle: b });
    for (const [op] of wrong)
      for (const a of [undefined, null, 0, 5, 20, "", "DEU", "30", true, [], {}, [3]]) {
        const d = client.details(`wrong-${op}`, { a });
        expect(["RULE_MATCH", "DEFAULT", "ERROR"]).toContain(d.reason);
        expect(client.variant(`wrong-${op}`, { a }, "fallback")).toBe(d.variant ?? "fallback");
      }
  });

  it("config reads dotted keys, own properties only", () => {
    const client = new Client({ bundle: { ...bundle, config: { api: { timeout_ms: 2500 }, "x.y": 1 } } });
    expect(client.config("api.timeout_ms")).toBe(2500);
    expect(client.config("api.retries", 3)).toBe(3);
    expect(client.config("api.constructor", "none")).toBe("none");
  });

  it("assign logs one exposure per call with the declared dimensions only", () => {
    const exposures: any[] = [];
    const b = structuredClone(bundle);
    b.experiments.onboarding.dimensions = ["plan"];
    const client = new Client({ bundle: b, onExposure: (e) => exposures.push(e) });
    const a = readVectors("vectors.json").assignments.find((x: any) => x.experiment === "onboarding" && x.arm);
    const ctx = { ...a.context, plan: "pro", email: "private@example.com" };
    expect(client.assign("onboarding", ctx)).toBe(a.arm);
    expect(client.arm("onboarding", ctx)).toBe(a.arm);
    expect(exposures).toEqual([
      { type: "exposure", experiment: "onboarding", arm: a.arm, unit: String(a.context.user_id), flag: "onboarding-flow", environment: "prod", ts: expect.any(Number), dimensions: { plan: "pro" } },
    ]);
  });
});

describe("consent counts (onConsentNotGiven)", () => {
  // The vectors' `onboarding` experiment requires consent at consent.purposes.experiments.
  const consent = { purposes: { experiments: true } };
  const units = Array.from({ length: 40 }, (_, i) => ({ user_id: `person-${i}`, country: "DE", ...(i % 3 ? {} : { consent }) }));
  const contexts = [
    ...units,
    ...units, // a unit is counted once, however often it is asked about
    { country: "DE" }, // no unit id: never considered
    { user_id: 7, country: "FR" }, // an integer id counts as its decimal
  ];
  const serve = (client: Client): void => {
    for (const c of contexts) {
      client.assign("onboarding", c);
      client.variant("onboarding-flow", c);
      client.details("onboarding-flow", c);
    }
  };

  it("counts each unit once per experiment, with no id in the batch, on close()", () => {
    const batches: any[][] = [];
    const client = new Client({ bundle, onConsentNotGiven: (b) => batches.push(b) });
    serve(client);
    expect(batches).toEqual([]); // batched, not per call
    client.close();
    expect(batches).toEqual([
      [{ type: "consent_not_given", experiment: "onboarding", flag: "onboarding-flow", environment: "prod", units: 27, from: expect.any(Number), to: expect.any(Number) }],
    ]);
    const [count] = batches[0];
    expect(count.from).toBeLessThanOrEqual(count.to);
    expect(JSON.stringify(batches)).not.toMatch(/person-|"7"/);
    client.flush();
    expect(batches.length).toBe(1); // nothing new, no empty batch
  });

  it("agrees with the Python runtime's consent_not_given records on the same contexts", () => {
    const python = process.env.FLAGSTONE_PYTHON ?? join(process.cwd(), "..", "..", ".venv", "bin", "python");
    const script = [
      "import json, sys",
      "from flagstone.runtime import Client",
      "from flagstone.runtime.sinks import MemorySink",
      "doc = json.load(sys.stdin)",
      "sink = MemorySink()",
      "with Client.from_dict(doc['bundle'], sink=sink, pseudonym_key='k') as client:",
      "    for c in doc['contexts']:",
      "        client.assign('onboarding', c); client.variant('onboarding-flow', c); client.details('onboarding-flow', c)",
      "print(json.dumps([{k: r[k] for k in ('experiment', 'flag', 'environment', 'units')} for r in sink.records if r['type'] == 'consent_not_given']))",
    ].join("\n");
    const want = JSON.parse(execFileSync(python, ["-c", script], { input: JSON.stringify({ bundle, contexts }), encoding: "utf8" }));
    const got: any[] = [];
    const client = new Client({ bundle, onConsentNotGiven: (b) => got.push(...b.map(({ experiment, flag, environment, units }) => ({ experiment, flag, environment, units }))) });
    serve(client);
    client.close();
    expect(got).toEqual(want);
    expect(want[0].units).toBe(27);
  });

  it("hands a batch over every flushInterval ms, and counts nothing without a callback", async () => {
    const batches: any[][] = [];
    const client = new Client({ bundle, flushInterval: 20, onConsentNotGiven: (b) => batches.push(b) });
    client.assign("onboarding", units[1]);
    await new Promise((r) => setTimeout(r, 80));
    expect(batches.map((b) => b[0].units)).toEqual([1]);
    client.assign("onboarding", units[2]);
    client.assign("onboarding", units[1]);
    await new Promise((r) => setTimeout(r, 80));
    expect(batches.map((b) => b[0].units)).toEqual([1, 1]);
    expect(batches[1][0].from).toBe(batches[0][0].to);
    client.close();
    const quiet = new Client({ bundle });
    expect(quiet.assign("onboarding", units[1])).toBe(null);
    quiet.close();
  });
});

describe("Client from a URL", () => {
  it("polls with If-None-Match, swaps a changed bundle and tells listeners which flags changed", async () => {
    const s = serve();
    const client = new Client({ url: await s.url, pollInterval: 20 });
    open.push({ server: s.server, client });
    expect(await client.ready).toBe(true);
    const events: ChangeEvent[] = [];
    client.onChange((e) => events.push(e));
    await waitFor(() => s.requests.length >= 3);
    expect(s.requests[0].etag).toBeUndefined();
    expect(s.requests[2].etag).toBe(`"${createHash("sha256").update(s.body).digest("hex")}"`);
    expect(events).toEqual([]);
    s.body = JSON.stringify(variantOf(bundle, "op-eq", "yes", "a"));
    await waitFor(() => events.length === 1);
    expect(events[0]).toEqual({ hash: `sha256:${"a".repeat(64)}`, previousHash: bundle.hash, flagsChanged: ["op-eq"] });
    expect(client.variant("op-eq", {})).toBe("yes");
  });

  it("keeps the last good bundle through a server error, a truncated body and an invalid bundle", async () => {
    const s = serve();
    const errors: string[] = [];
    const client = new Client({ url: await s.url, pollInterval: 15, onError: (e) => errors.push(e.message) });
    open.push({ server: s.server, client });
    await client.ready;
    s.status = 500;
    await waitFor(() => errors.length >= 1);
    s.status = 200;
    const full = JSON.stringify(variantOf(bundle, "op-eq", "yes", "b"));
    s.body = full.slice(0, full.length / 2);
    await waitFor(() => errors.some((e) => e.startsWith("not valid JSON")));
    s.body = JSON.stringify({ ...variantOf(bundle, "op-eq", "yes", "c"), version: 2 });
    await waitFor(() => errors.includes("unsupported bundle version 2"));
    expect(client.hash).toBe(bundle.hash);
    expect(client.variant("op-eq", {})).toBe("no");
    expect(errors[0]).toMatch(/answered HTTP 500$/);
    s.body = full; // the server recovers: the next poll goes live
    await waitFor(() => client.hash === `sha256:${"b".repeat(64)}`);
    expect(client.lastError).toBeNull();
  });

  it("a first fetch that fails resolves ready with false and keeps polling", async () => {
    const s = serve();
    s.status = 503;
    const client = new Client({ url: await s.url, pollInterval: 15, onError: () => {} });
    open.push({ server: s.server, client });
    expect(await client.ready).toBe(false);
    expect(client.variant("op-eq", {}, "dflt")).toBe("dflt");
    s.status = 200;
    await waitFor(() => client.hash === bundle.hash);
  });

  it("abandons a poll the server never answers, and goes on polling", async () => {
    let hang = true;
    const body = JSON.stringify(bundle);
    const server = createServer((_req, res) => void (hang ? undefined : res.writeHead(200).end(body)));
    const url = await new Promise<string>((r) => server.listen(0, "127.0.0.1", () => r(`http://127.0.0.1:${(server.address() as AddressInfo).port}/b.json`)));
    const errors: string[] = [];
    const client = new Client({ url, pollInterval: 10, timeout: 100, onError: (e) => errors.push(e.message) });
    open.push({ server, client });
    expect(await client.ready).toBe(false);
    expect(errors[0]).toBe(`${url} did not answer within 100 ms`);
    hang = false;
    await waitFor(() => client.hash === bundle.hash);
    server.closeAllConnections();
  });

  it("stop() before the poller has loaded means it never polls", async () => {
    const s = serve();
    const client = new Client({ url: await s.url, pollInterval: 10 });
    open.push({ server: s.server, client });
    client.stop();
    await new Promise((r) => setTimeout(r, 80));
    expect(s.requests).toEqual([]);
  });

  it("stop() ends polling", async () => {
    const s = serve();
    const client = new Client({ url: await s.url, pollInterval: 10 });
    open.push({ server: s.server, client });
    await waitFor(() => s.requests.length >= 2);
    client.stop();
    await new Promise((r) => setTimeout(r, 30));
    const seen = s.requests.length;
    await new Promise((r) => setTimeout(r, 60));
    expect(s.requests.length).toBe(seen);
  });
});
