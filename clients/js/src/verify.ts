/** The bundle hash and signature check (signature.ts), throwing BundleError. */
import { BundleError } from "./errors.js";
import { signatures } from "./signature.js";

export type { PublicKey } from "./signature.js";
export const { canonicalJson, bundleHash, verifyBundle } = signatures(BundleError);
