// @vitest-environment happy-dom
import { StrictMode, useState, type ReactNode } from "react";
import { act, cleanup, render, screen } from "@testing-library/react";
import { hydrateRoot } from "react-dom/client";
import { renderToString } from "react-dom/server";
import { afterEach, describe, expect, it, vi } from "vitest";
import { Client, type Exposure } from "../src/full.js";
import { ABTestProvider, ConfigurationProvider, FeatureFlagProvider, useConfig, useExperiment, useFlag, useValue, useVariant } from "../src/react.js";
import { readVectors } from "./vectors.js";

const vectors = readVectors("vectors.json");
const bundle = vectors.bundle;
const withChange = (change: (b: any) => void): any => {
  const next = structuredClone(bundle);
  change(next);
  next.hash = `sha256:${"1".repeat(64)}`;
  return next;
};
// A unit the Python runtime enrolled in `onboarding` (from the shared vectors).
const enrolled = vectors.assignments.find((a: any) => a.experiment === "onboarding" && a.arm !== null);

const renders: Record<string, number> = {};
function Probe({ name, children }: { name: string; children: ReactNode }): ReactNode {
  renders[name] = (renders[name] ?? 0) + 1;
  return <span data-testid={name}>{children}</span>;
}
const Plan = (): ReactNode => <Probe name="plan">{String(useFlag("op-eq"))}</Probe>;
const Country = (): ReactNode => <Probe name="country">{String(useVariant("op-in"))}</Probe>;
const Layout = (): ReactNode => <Probe name="layout">{JSON.stringify(useValue("json-payload", null))}</Probe>;
const Onboarding = (): ReactNode => <Probe name="onboarding">{String(useExperiment("onboarding"))}</Probe>;

afterEach(() => {
  cleanup();
  for (const k of Object.keys(renders)) delete renders[k];
});

describe("FeatureFlagProvider and the hooks", () => {
  it("render the client's answers for the context", () => {
    const client = new Client({ bundle });
    const ctx = { user_id: "u-1", plan: "pro", country: "FR", device: { os: "ios" } };
    render(
      <FeatureFlagProvider client={client} context={ctx}>
        <Plan />
        <Country />
        <Layout />
      </FeatureFlagProvider>,
    );
    expect(screen.getByTestId("plan").textContent).toBe("true");
    expect(screen.getByTestId("country").textContent).toBe(client.variant("op-in", ctx));
    expect(screen.getByTestId("layout").textContent).toBe(JSON.stringify(client.value("json-payload", ctx)));
  });

  it("re-render on a bundle change, without a reload", async () => {
    const client = new Client({ bundle });
    render(
      <FeatureFlagProvider client={client} context={{ plan: "free" }}>
        <Plan />
      </FeatureFlagProvider>,
    );
    expect(screen.getByTestId("plan").textContent).toBe("false");
    await act(() => client.load(withChange((b) => (b.flags["op-eq"].default = { variant: "yes" }))));
    expect(screen.getByTestId("plan").textContent).toBe("true");
  });

  it("a context change re-renders only the consumers whose answer changed", () => {
    const client = new Client({ bundle });
    let setCtx!: (ctx: Record<string, unknown>) => void;
    function App({ children }: { children: ReactNode }): ReactNode {
      const [ctx, set] = useState<Record<string, unknown>>({ user_id: "u-1", plan: "free", country: "DE" });
      setCtx = set;
      return (
        <FeatureFlagProvider client={client} context={ctx}>
          {children}
        </FeatureFlagProvider>
      );
    }
    render(
      <App>
        <Plan />
        <Country />
      </App>,
    );
    expect(renders).toEqual({ plan: 1, country: 1 });
    act(() => setCtx({ user_id: "u-1", plan: "pro", country: "DE" }));
    expect(screen.getByTestId("plan").textContent).toBe("true");
    expect(renders).toEqual({ plan: 2, country: 1 });
    act(() => setCtx({ user_id: "u-1", plan: "pro", country: "DE" })); // equal context: nothing renders
    expect(renders).toEqual({ plan: 2, country: 1 });
  });

  it("an exposure is logged exactly once per unit per experiment, whatever renders", () => {
    const exposures: Exposure[] = [];
    const client = new Client({ bundle });
    let setCtx!: (ctx: Record<string, unknown>) => void;
    function App({ children }: { children: ReactNode }): ReactNode {
      const [ctx, set] = useState<Record<string, unknown>>(enrolled.context);
      setCtx = set;
      return (
        <FeatureFlagProvider client={client} context={ctx}>
          <ABTestProvider onExposure={(e) => exposures.push(e)}>{children}</ABTestProvider>
        </FeatureFlagProvider>
      );
    }
    render(
      <StrictMode>
        <App>
          <Onboarding />
          <Onboarding />
          <Plan />
        </App>
      </StrictMode>,
    );
    expect(screen.getAllByTestId("onboarding")[0].textContent).toBe(enrolled.arm);
    act(() => setCtx({ ...enrolled.context, plan: "pro" })); // same unit, another answer elsewhere
    expect(exposures).toHaveLength(1);
    expect(exposures[0]).toMatchObject({ type: "exposure", experiment: "onboarding", arm: enrolled.arm, unit: String(enrolled.context.user_id), flag: "onboarding-flow" });
    act(() => setCtx({ ...enrolled.context, consent: false })); // consent withdrawn: no arm, no exposure
    expect(screen.getAllByTestId("onboarding")[0].textContent).toBe("null");
    expect(exposures).toHaveLength(1);
  });

  it("a flag that serves an experiment arm logs that exposure too", () => {
    const onExposure = vi.fn();
    const client = new Client({ bundle, onExposure });
    const Flow = (): ReactNode => <Probe name="flow">{String(useVariant("onboarding-flow"))}</Probe>;
    render(
      <FeatureFlagProvider client={client} context={enrolled.context}>
        <Flow />
        <Flow />
      </FeatureFlagProvider>,
    );
    expect(screen.getAllByTestId("flow")[0].textContent).toBe(enrolled.arm);
    expect(onExposure).toHaveBeenCalledTimes(1);
    expect(onExposure.mock.calls[0][0]).toMatchObject({ experiment: "onboarding", arm: enrolled.arm });
  });

  it("a missing flag or a hostile context renders the fallback, never an error", () => {
    const client = new Client({ bundle });
    const Missing = (): ReactNode => <Probe name="missing">{String(useVariant("no-such-flag", "fallback"))}</Probe>;
    const hostile = { user_id: "\ud800", plan: "pro" }; // a lone surrogate cannot be hashed
    const Rollout = (): ReactNode => <Probe name="rollout">{String(useValue("rollout-default", "fallback"))}</Probe>;
    render(
      <FeatureFlagProvider client={client} context={hostile}>
        <Missing />
        <Rollout />
      </FeatureFlagProvider>,
    );
    expect(screen.getByTestId("missing").textContent).toBe("fallback");
    expect(screen.getByTestId("rollout").textContent).toBe("fallback");
  });
});

describe("ConfigurationProvider and useConfig", () => {
  it("read dotted keys, fall back to defaults, and follow bundle changes", async () => {
    const client = new Client({ bundle: withChange((b) => (b.config = { api: { timeout_ms: 2500 } })) });
    const Timeout = (): ReactNode => <Probe name="timeout">{String(useConfig("api.timeout_ms"))}</Probe>;
    const Retries = (): ReactNode => <Probe name="retries">{String(useConfig("api.retries"))}</Probe>;
    render(
      <ConfigurationProvider client={client} defaults={{ "api.retries": 3 }}>
        <Timeout />
        <Retries />
      </ConfigurationProvider>,
    );
    expect(screen.getByTestId("timeout").textContent).toBe("2500");
    expect(screen.getByTestId("retries").textContent).toBe("3");
    await act(() => client.load({ ...client.bundle, config: { api: { timeout_ms: 900, retries: 5 } }, hash: `sha256:${"2".repeat(64)}` }));
    expect(screen.getByTestId("timeout").textContent).toBe("900");
    expect(screen.getByTestId("retries").textContent).toBe("5");
  });
});

describe("server rendering", () => {
  it("the server's markup is what the client hydrates, with no mismatch and no window access", () => {
    const ctx = { user_id: "u-42", plan: "pro", country: "DE", device: { os: "android" } };
    const app = (): ReactNode => (
      <FeatureFlagProvider bundle={bundle} context={ctx}>
        <Plan />
        <Country />
        <Layout />
      </FeatureFlagProvider>
    );
    const windowGetter = vi.spyOn(globalThis, "window", "get");
    const html = renderToString(app());
    expect(windowGetter).not.toHaveBeenCalled();
    windowGetter.mockRestore();
    const container = document.createElement("div");
    container.innerHTML = html;
    document.body.appendChild(container);
    const serverDom = container.innerHTML;
    const errors = vi.spyOn(console, "error");
    const recoverable = vi.fn();
    let root!: ReturnType<typeof hydrateRoot>;
    act(() => void (root = hydrateRoot(container, app(), { onRecoverableError: recoverable })));
    expect(recoverable).not.toHaveBeenCalled();
    expect(errors).not.toHaveBeenCalled();
    expect(container.innerHTML).toBe(serverDom);
    expect(html).toContain('data-testid="plan">true<');
    act(() => root.unmount());
    container.remove();
  });
});

describe("FeatureFlagProvider with options.url", () => {
  it("polls after mount, survives StrictMode's double effects, and stops on unmount", async () => {
    let polls = 0;
    let served = bundle;
    const fetch = async (): Promise<Response> => (polls++, new Response(JSON.stringify(served)));
    const view = render(
      <StrictMode>
        <FeatureFlagProvider bundle={bundle} options={{ url: "/flags.json", pollInterval: 10, fetch }} context={{ plan: "free" }}>
          <Plan />
        </FeatureFlagProvider>
      </StrictMode>,
    );
    expect(screen.getByTestId("plan").textContent).toBe("false"); // the bundle prop answers the first render
    served = withChange((b) => (b.flags["op-eq"].default = { variant: "yes" }));
    await vi.waitFor(() => expect(screen.getByTestId("plan").textContent).toBe("true"), { timeout: 2000 });
    view.unmount();
    const after = polls;
    await new Promise((r) => setTimeout(r, 60));
    expect(polls).toBeLessThanOrEqual(after + 1); // at most the poll already in flight
  });
});
