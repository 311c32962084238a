// @vitest-environment happy-dom
import { expect, it, vi } from "vitest";
import { Client } from "../src/index.js";
import { readVectors } from "./vectors.js";

const body = JSON.stringify(readVectors("vectors.json").bundle);

it("pauses polling while the page is hidden and polls at once when it is shown again", async () => {
  let polls = 0;
  const fetch = async (): Promise<Response> => (polls++, new Response(body, { headers: { ETag: '"x"' } }));
  let state: DocumentVisibilityState = "visible";
  vi.spyOn(document, "visibilityState", "get").mockImplementation(() => state);
  const client = new Client({ url: "/flags/prod.json", pollInterval: 20, fetch });
  try {
    expect(await client.ready).toBe(true);
    state = "hidden";
    document.dispatchEvent(new Event("visibilitychange"));
    await new Promise((r) => setTimeout(r, 60));
    const whileHidden = polls;
    await new Promise((r) => setTimeout(r, 100));
    expect(polls).toBe(whileHidden);
    state = "visible";
    document.dispatchEvent(new Event("visibilitychange"));
    await vi.waitFor(() => expect(polls).toBeGreaterThan(whileHidden), { timeout: 500, interval: 5 });
    await vi.waitFor(() => expect(polls).toBeGreaterThan(whileHidden + 2), { timeout: 500, interval: 5 }); // and goes on
  } finally {
    client.close();
  }
});
