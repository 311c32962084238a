/** A bundle that cannot be used; the client keeps the last good one. */
export class BundleError extends Error {
  override name = "BundleError";
}
