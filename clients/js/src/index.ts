export { Client } from "./client.js";
export type {
  ArmOf,
  ChangeEvent,
  ClientOptions,
  ConsentNotGiven,
  ConfigKey,
  ConfigOf,
  ExperimentKey,
  Exposure,
  FlagKey,
  Register,
  ValueOf,
  VariantOf,
} from "./client.js";
export { BundleError, compileBundle, type CompiledBundle, type Reason, type Resolution } from "./evaluate.js";
export { bucket, cborText, murmur3 } from "./hashing.js";
export type { Context, Json } from "./operators.js";
export type { PublicKey } from "./signature.js";
