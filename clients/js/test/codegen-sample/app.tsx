// A sample app held to the generated types: every flag key, variant and config key it uses
// must exist, and the switch below must cover every variant of graph-renderer.
import { Client } from "@flagstone/client";
import { useConfig, useExperiment, useFlag, useVariant } from "@flagstone/client/react";
import type { ReactNode } from "react";
import { CONFIG, FLAGS } from "./flags.generated";

export function Graph(): ReactNode {
  const renderer = useVariant(FLAGS.graphRenderer, "canvas");
  const conflictUi: boolean = useFlag("sync-conflict-ui");
  const timeout: number | undefined = useConfig(CONFIG.apiTimeoutMs);
  const arm: "classic" | "short" | null = useExperiment("onboarding-length");
  switch (renderer) {
    case "canvas":
    case "webgl":
    case "metal":
      return `${renderer} ${conflictUi} ${timeout} ${arm}`;
    default: {
      const unreachable: never = renderer;
      return unreachable;
    }
  }
}

export function server(client: Client): string | undefined {
  const nodes = client.value("max-graph-nodes", { user_id: "u-1" });
  return client.variant("graph-renderer", { platform: "web" }) + String(nodes);
}
