/**
 * The bundle hash and Ed25519 signature, as `flagstone build --sign` writes them:
 *
 *     hash      = "sha256:" + hex(sha256(JCS(bundle without "hash" and "signature")))
 *     signature = base64(Ed25519(private key, "flagstone-bundle:" + hash))
 *
 * JCS is RFC 8785 canonical JSON: keys sorted by UTF-16 code units, no whitespace, and
 * numbers and strings as ECMAScript's JSON.stringify writes them (which RFC 8785 adopts).
 * Both use WebCrypto (browsers, Node 18+); nothing here runs on the evaluation path.
 *
 * The functions are made for an error class handed in: the client passes its BundleError
 * when it loads this chunk, so the core chunk shares no module with it (verify.ts is the
 * public entry point, made with the same class).
 */
import type { BundleError as BundleErrorClass } from "./errors.js";

/** An Ed25519 public key: PEM (SPKI, as `openssl pkey -pubout` writes), raw 32 bytes, or a CryptoKey. */
export type PublicKey = string | Uint8Array | CryptoKey;

export function signatures(BundleError: typeof BundleErrorClass) {

  function canonicalJson(value: unknown): string {
    if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
    if (value !== null && typeof value === "object")
      return `{${Object.keys(value)
        .sort()
        .filter((k) => (value as any)[k] !== undefined)
        .map((k) => `${JSON.stringify(k)}:${canonicalJson((value as any)[k])}`)
        .join(",")}}`;
    if (typeof value === "number" && !Number.isFinite(value)) throw new BundleError("a bundle cannot hold NaN or Infinity");
    return JSON.stringify(value);
  }

  const encoder = new TextEncoder();
  // Browsers and Node 19+ have globalThis.crypto; Node 18 has WebCrypto in node:crypto.
  let subtleCrypto: SubtleCrypto | undefined = globalThis.crypto?.subtle;
  async function subtle(): Promise<SubtleCrypto> {
    const node = (globalThis as { process?: { versions?: { node?: string } } }).process?.versions?.node;
    if (!subtleCrypto && node) {
      const nodeCrypto = "node:crypto"; // a variable, so browser bundlers leave it alone
      subtleCrypto = ((await import(/* @vite-ignore */ nodeCrypto)) as { webcrypto: Crypto }).webcrypto.subtle;
    }
    if (!subtleCrypto) throw new BundleError("WebCrypto is not available here, so a signed bundle cannot be verified");
    return subtleCrypto;
  }
  const fromBase64 = (text: string): Uint8Array => Uint8Array.from(atob(text.replace(/\s+/g, "")), (c) => c.charCodeAt(0));

  async function bundleHash(bundle: Record<string, unknown>): Promise<string> {
    const { hash: _h, signature: _s, ...body } = bundle;
    const digest = new Uint8Array(await (await subtle()).digest("SHA-256", encoder.encode(canonicalJson(body))));
    return "sha256:" + Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  async function importKey(key: PublicKey): Promise<CryptoKey> {
    if (typeof key === "object" && !(key instanceof Uint8Array)) return key;
    const pem = typeof key === "string" && key.includes("-----");
    const bytes = typeof key === "string" ? fromBase64(pem ? key.replace(/-----[^-]+-----/g, "") : key) : key;
    try {
      return await (await subtle()).importKey(pem || bytes.length !== 32 ? "spki" : "raw", bytes as BufferSource, { name: "Ed25519" }, false, ["verify"]);
    } catch (e) {
      throw new BundleError(`the public key is not a usable Ed25519 key: ${(e as Error).message}`);
    }
  }

  /** Throws BundleError unless the bundle is signed by `key` and unmodified since. */
  async function verifyBundle(bundle: unknown, key: PublicKey): Promise<void> {
    if (typeof bundle !== "object" || !bundle || Array.isArray(bundle)) throw new BundleError("a bundle is a JSON object");
    const signature = (bundle as Record<string, unknown>).signature;
    if (typeof signature !== "string") throw new BundleError("bundle is not signed, and this client requires a signature");
    const expected = await bundleHash(bundle as Record<string, unknown>);
    if ((bundle as Record<string, unknown>).hash !== expected) throw new BundleError("bundle content does not match its hash (modified after it was built)");
    let valid = false;
    try {
      valid = await (await subtle()).verify({ name: "Ed25519" }, await importKey(key), fromBase64(signature) as BufferSource, encoder.encode("flagstone-bundle:" + expected));
    } catch (e) {
      if (e instanceof BundleError) throw e;
    }
    if (!valid) throw new BundleError("bundle signature is not valid for this public key");
  }

    return { canonicalJson, bundleHash, verifyBundle };
}
