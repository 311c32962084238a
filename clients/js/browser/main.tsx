// The page the browser test drives: the React providers over a polled bundle, one list
// item per flag (?flags=[...]) for the evaluation context in ?ctx={...}.
import { type ReactNode, useSyncExternalStore } from "react";
import { createRoot } from "react-dom/client";
import { FeatureFlagProvider, useFlagstone, useVariant } from "../src/react.js";

const params = new URLSearchParams(location.search);
const context = JSON.parse(params.get("ctx") ?? "{}");
const flags: string[] = JSON.parse(params.get("flags") ?? "[]");

function Flag({ name }: { name: string }): ReactNode {
  return <li data-flag={name}>{useVariant(name) ?? "none"}</li>;
}

function BundleHash(): ReactNode {
  const { client } = useFlagstone();
  const hash = useSyncExternalStore((notify) => client.onChange(notify), () => client.hash);
  return <output id="hash">{hash ?? ""}</output>;
}

createRoot(document.getElementById("root")!).render(
  <FeatureFlagProvider options={{ url: "/bundle.json", pollInterval: Number(params.get("poll") ?? 200) }} context={context}>
    <BundleHash />
    <ul>
      {flags.map((f) => (
        <Flag key={f} name={f} />
      ))}
    </ul>
  </FeatureFlagProvider>,
);
