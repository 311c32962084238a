import { describe, expect, it } from "vitest";
import { Client } from "../src/full.js";
import { BUCKETS, bucket, bucketer, cborText, murmur3 } from "../src/hashing.js";
import { readVectors } from "./vectors.js";

const vectors = readVectors("vectors.json");
const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString("hex");

describe("tests/conformance/vectors.json", () => {
  it("holds enough cases to mean something", () => {
    expect(vectors.flags.length).toBeGreaterThanOrEqual(5000);
    expect(vectors.assignments.length).toBeGreaterThanOrEqual(900);
    expect(vectors.flags.filter((c: any) => c.edge).length).toBeGreaterThan(2500);
  });

  it("every flag case: variant, value, reason, rule and experiment as the Python runtime answers", () => {
    const client = new Client({ bundle: vectors.bundle });
    const mismatches: string[] = [];
    for (const c of vectors.flags) {
      const r = client.details(c.flag, c.context);
      const got = { variant: r.variant, value: r.value ?? null, reason: r.reason, rule: r.ruleIndex, experiment: r.experiment };
      const want = { variant: c.variant, value: c.value, reason: c.reason, rule: c.rule, experiment: c.experiment };
      if (JSON.stringify(got) !== JSON.stringify(want))
        mismatches.push(`${c.flag} ${JSON.stringify(c.context).slice(0, 120)}: want ${JSON.stringify(want)}, got ${JSON.stringify(got)}`);
    }
    expect(mismatches.slice(0, 5)).toEqual([]);
  });

  it("every assignment case", () => {
    const client = new Client({ bundle: vectors.bundle });
    const mismatches = vectors.assignments.filter((a: any) => client.assign(a.experiment, a.context) !== a.arm);
    expect(mismatches.slice(0, 5)).toEqual([]);
  });

  it("every hash vector: CBOR input bytes, MurmurHash3 and bucket", () => {
    for (const v of vectors.hashes) {
      const data = cborText(`${v.salt}/${v.unit}`);
      expect(hex(data)).toBe(v.input_hex);
      expect(murmur3(data)).toBe(v.murmur3);
      expect(bucket(v.salt, v.unit)).toBe(v.bucket);
    }
  });

  it("a reused bucketer agrees with the vector-checked encoder on mixed ids of every length", () => {
    // The bucketer writes ASCII ids on a fast path and restarts in UTF-8 at the first other
    // character, over one buffer that grows: ids around the 24- and 256-byte CBOR headers.
    const pieces = ["a", "Z", "-", "0", "\u007f", "é", "ü", "日", "\u{1d4b0}", "\u0080"];
    let seed = 7;
    const rand = (n: number) => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0), seed % n);
    for (const salt of ["s", "checkout", "é-salt"]) {
      const fast = bucketer(`${salt}/`);
      for (let i = 0; i < 600; i++) {
        let unit = "";
        const length = [0, 10, 14, 20, 30, 250, 300][rand(7)] + rand(6);
        const ascii = rand(2) === 0;
        while (unit.length < length) unit += ascii ? pieces[rand(4)] : pieces[rand(pieces.length)];
        const want = Math.floor((murmur3(cborText(`${salt}/${unit}`)) * BUCKETS) / 2 ** 32);
        expect([unit, fast(unit)]).toEqual([unit, want]);
      }
    }
  });
});
