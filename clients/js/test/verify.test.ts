import { createHash, generateKeyPairSync, sign } from "node:crypto";
import { describe, expect, it } from "vitest";
import { BundleError, Client } from "../src/index.js";
import { bundleHash, canonicalJson, verifyBundle } from "../src/verify.js";
import { readVectors } from "./vectors.js";

const hashVectors = readVectors("hash-vectors.json");
const canonicalCases: [string, any][] = hashVectors.canonical.map((v: any) => [v.name, v]);
const bundleCases: [string, any][] = hashVectors.bundles.map((v: any) => [v.name, v]);
const fromHex = (hex: string): Uint8Array => Uint8Array.from(Buffer.from(hex, "hex"));

describe("tests/conformance/hash-vectors.json", () => {
  it.each(canonicalCases)("canonical JSON: %s", (_name, v: any) => {
    const text = canonicalJson(JSON.parse(v.json));
    expect(text).toBe(v.canonical);
    expect(createHash("sha256").update(text, "utf8").digest("hex")).toBe(v.sha256);
  });

  it.each(bundleCases)("bundle hash and signature: %s", async (_name, v: any) => {
    const bundle = JSON.parse(v.file);
    expect(await bundleHash(bundle)).toBe(v.hash);
    await expect(verifyBundle(bundle, fromHex(v.public_key))).resolves.toBeUndefined();
  });
});

describe("signed bundles", () => {
  const v = hashVectors.bundles[0];
  const key = fromHex(v.public_key);

  it("a client with a public key goes live only on a bundle signed by that key", async () => {
    const client = new Client({ bundle: v.file, publicKey: key, onError: () => {} });
    expect(await client.ready).toBe(true);
    expect(client.hash).toBe(v.hash);
  });

  it("refuses unsigned, modified and foreign-key bundles, keeping the last good one", async () => {
    const errors: string[] = [];
    const client = new Client({ bundle: v.file, publicKey: key, onError: (e) => errors.push(e.message) });
    await client.ready;
    const good = JSON.parse(v.file);
    const { signature: _s, ...unsigned } = good;
    expect(await client.load(unsigned)).toBe(false);
    expect(await client.load({ ...good, project: "tampered" })).toBe(false);
    const other = generateKeyPairSync("ed25519");
    const forged = { ...good, signature: sign(null, Buffer.from(`flagstone-bundle:${good.hash}`), other.privateKey).toString("base64") };
    expect(await client.load(forged)).toBe(false);
    expect(errors).toEqual([
      "bundle is not signed, and this client requires a signature",
      "bundle content does not match its hash (modified after it was built)",
      "bundle signature is not valid for this public key",
    ]);
    expect(client.hash).toBe(v.hash);
  });

  it("takes the key as PEM, as `openssl pkey -pubout` writes it", async () => {
    const pair = generateKeyPairSync("ed25519");
    const pem = pair.publicKey.export({ type: "spki", format: "pem" }).toString();
    const bundle = JSON.parse(v.file);
    bundle.signature = sign(null, Buffer.from(`flagstone-bundle:${bundle.hash}`), pair.privateKey).toString("base64");
    await expect(verifyBundle(bundle, pem)).resolves.toBeUndefined();
    await expect(verifyBundle(bundle, key)).rejects.toThrow(BundleError);
  });
});
