/**
 * `@flagstone/client/full`: the core with every part added (dates, semver, the consent
 * counts), for apps that would rather not think about which parts their bundles use.
 */
import "./consent.js";
import "./dates.js";
import "./semver.js";

export * from "./index.js";
