/**
 * Deterministic bucketing, byte for byte the Python runtime's (src/flagstone/runtime/hashing.py):
 *
 *     bucket(salt, unit) = (murmur3_x86_32(cbor_text(salt + "/" + unit), seed 0) * 10_000) >> 32
 *
 * cbor_text is the CBOR (RFC 8949) text string: header 0x60+n below 24 bytes, 0x78 n below
 * 256, 0x79 + 2 bytes below 65,536, 0x7a + 4 bytes beyond, then the UTF-8 bytes. 32-bit
 * arithmetic is `Math.imul` and `>>> 0`; the product with 10,000 stays below 2^53, so the
 * division by 2^32 is exact.
 */
export const BUCKETS = 10_000;

/** UTF-8 of `text` written at `at`; a lone surrogate throws, as Python's str.encode does. */
function writeUtf8(text: string, out: Uint8Array, at: number): number {
  for (let i = 0; i < text.length; i++) {
    let c = text.charCodeAt(i);
    if (c < 0x80) {
      out[at++] = c;
      continue;
    }
    if (c >= 0xd800 && c < 0xe000) {
      const d = text.charCodeAt(++i);
      if (c >= 0xdc00 || !(d >= 0xdc00 && d < 0xe000)) throw new TypeError("unit id has a lone surrogate");
      c = 0x10000 + ((c & 0x3ff) << 10) + (d & 0x3ff);
    }
    // A lead byte of 110, 1110 or 11110 and n bits of payload, then n continuation bytes.
    let n = c < 0x800 ? 1 : c < 0x10000 ? 2 : 3;
    out[at++] = ((0xff80 >> n) & 255) | (c >> (6 * n));
    while (n--) out[at++] = 0x80 | ((c >> (6 * n)) & 63);
  }
  return at;
}

// The CBOR header of an n-byte text string, written to end at buf[5]; returns where it starts.
function header(buf: Uint8Array, n: number): number {
  const k = n < 24 ? 0 : n < 0x100 ? 1 : n < 0x10000 ? 2 : 3; // 0x78, 0x79, 0x7a: 1, 2, 4 length bytes
  const size = k < 3 ? k : 4;
  buf[4 - size] = k ? 0x77 + k : 0x60 + n;
  for (let i = 0; i < size; i++) buf[4 - i] = (n >>> (8 * i)) & 255;
  return 4 - size;
}

/** The CBOR text-string encoding of `text` (a fresh array; the hot path uses a bucketer's buffer). */
export function cborText(text: string): Uint8Array {
  const buf = new Uint8Array(text.length * 3 + 5);
  const end = writeUtf8(text, buf, 5);
  return buf.slice(header(buf, end - 5), end);
}

/** MurmurHash3 x86 32-bit of data[start, end), seed 0, unsigned. */
export function murmur3(data: Uint8Array, start = 0, end = data.length): number {
  let h = 0;
  let i = start;
  const n = end - start;
  const blocks = start + (n & ~3);
  for (; i < blocks; i += 4) {
    let k = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24);
    k = Math.imul(k, 0xcc9e2d51);
    k = Math.imul((k << 15) | (k >>> 17), 0x1b873593);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  // The 1 to 3 bytes left, little-endian.
  let k = 0;
  for (let j = n & 3; j; ) k = (k << 8) | data[i + --j];
  if (n & 3) {
    k = Math.imul(k, 0xcc9e2d51);
    h ^= Math.imul((k << 15) | (k >>> 17), 0x1b873593);
  }
  h ^= n;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/**
 * A bucketing function for one salt prefix (`salt + "/"`), compiled once: the prefix's
 * bytes stay in a buffer of their own, so a call writes only the unit's UTF-8 and the CBOR
 * header in front. (Hashing `prefix + unit` would build and flatten a new string each call.)
 */
export function bucketer(prefix: string): (unit: string) => number {
  let buf = new Uint8Array(prefix.length * 3 + 69);
  const from = writeUtf8(prefix, buf, 5);
  return (unit) => {
    if (buf.length < from + unit.length * 3) writeUtf8(prefix, (buf = new Uint8Array(from + unit.length * 3)), 5);
    // Most ids are ASCII: one byte a character, no branches of UTF-8.
    let end = from;
    for (let i = 0, c; i < unit.length; i++)
      if ((c = unit.charCodeAt(i)) < 128) buf[end++] = c;
      else {
        end = writeUtf8(unit, buf, from);
        break;
      }
    return Math.floor((murmur3(buf, header(buf, end - 5), end) * BUCKETS) / 4294967296);
  };
}

/** The bucket (0..9,999) of `unit` under `salt`. */
export const bucket = (salt: string, unit: string): number => bucketer(salt + "/")(unit);
