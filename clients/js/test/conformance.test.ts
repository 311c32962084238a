import { describe, expect, it } from "vitest";
import { Client } from "../src/index.js";
import { bucket, cborText, murmur3 } from "../src/hashing.js";
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
});
