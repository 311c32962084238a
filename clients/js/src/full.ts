/**
 * `@flagstone/client/full`: the core with every part added (dates, semver, regex,
 * experiments, prerequisites, the consent counts), for apps that would rather not think
 * about which parts their bundles use.
 */
import "./consent.js";
import "./dates.js";
import "./experiments.js";
import "./prerequisites.js";
import "./regex.js";
import "./semver.js";

export * from "./index.js";
