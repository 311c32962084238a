/**
 * The asynchronous paths import the parts a bundle uses by themselves: `await client.load`
 * and a bundle fetched from a url (a real HTTP server on localhost), with only the core
 * imported here. Each test starts a fresh module graph, so no entry point of a part ran.
 */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { beforeEach, describe, expect, it, vi } from "vitest";
import { readVectors } from "./vectors.js";

const vectors = readVectors("vectors.json");
const core = async (): Promise<typeof import("../src/index.js")> => {
  vi.resetModules();
  return import("../src/index.js");
};
const agrees = (client: any): void => {
  for (const c of vectors.flags) expect([c.flag, client.details(c.flag, c.context).variant]).toEqual([c.flag, c.variant]);
};

describe("the async paths import the parts a bundle needs", () => {
  beforeEach(() => vi.resetModules());

  it("the core alone refuses the conformance bundle synchronously (it uses every part)", async () => {
    const { Client } = await core();
    expect(new Client({ bundle: vectors.bundle, onError: () => {} }).lastError).toMatch(/needs import "@flagstone\/client\/(dates|semver|regex|experiments|prerequisites)"/);
  });

  it("await client.load(bundle): dates, semver, regex, experiments, prerequisites and the consent counts arrive by themselves", async () => {
    const { Client } = await core();
    const counts: any[] = [];
    const client = new Client({ onConsentNotGiven: (c) => counts.push(...c), onError: (e) => counts.push(e.message) });
    expect(await client.load(JSON.stringify(vectors.bundle))).toBe(true);
    agrees(client);
    for (const a of vectors.assignments) expect([a.experiment, client.arm(a.experiment, a.context)]).toEqual([a.experiment, a.arm]);
    client.flush();
    counts.length = 0;
    expect(client.assign("onboarding", { user_id: "u-not-asked-yet" })).toBeNull(); // consent: required, none given
    client.flush();
    expect(counts).toMatchObject([{ type: "consent_not_given", experiment: "onboarding", units: 1 }]);
  });

  it("a url: the polled bundle goes live with the parts it uses", async () => {
    const { Client } = await core();
    const server = createServer((_req, res) => void res.writeHead(200, { "Content-Type": "application/json" }).end(JSON.stringify(vectors.bundle)));
    const port = await new Promise<number>((resolve) => server.listen(0, "127.0.0.1", () => resolve((server.address() as AddressInfo).port)));
    const client = new Client({ url: `http://127.0.0.1:${port}/prod.json`, pollInterval: 0, onError: (e) => expect.fail(e.message) });
    try {
      expect(await client.ready).toBe(true);
      agrees(client);
    } finally {
      client.close();
      server.close();
    }
  });
});
