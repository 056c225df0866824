import type { IntervalHistogram } from "node:perf_hooks";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

// Prometheus metrics on an injected registry (one per bridge, so tests can run several).

export function createMetrics(chatStateCounts: () => Promise<Record<string, number>>, loopDelay?: IntervalHistogram) {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: "parley_process_" });
  const metrics = {
    registry,
    visitorsConnected: new Gauge({ name: "parley_visitors_connected", help: "Visitor WebSocket connections open on this process", registers: [registry] }),
    messages: new Counter({
      name: "parley_messages_total",
      help: "Chat messages relayed, by direction (in: visitor to agent, out: agent to visitor)",
      labelNames: ["direction"] as const,
      registers: [registry],
    }),
    stanzaLatency: new Histogram({
      name: "parley_stanza_handling_seconds",
      help: "Time from receiving a visitor message or agent stanza to having stored and relayed it",
      labelNames: ["direction"] as const,
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    }),
    messageBounces: new Counter({
      name: "parley_message_bounces_total",
      help: "Messages Parley sent that came back as errors (e.g. service-unavailable: an agent account that does not exist), by RFC 6120 condition",
      labelNames: ["condition"] as const,
      registers: [registry],
    }),
    componentReconnects: new Counter({ name: "parley_component_reconnects_total", help: "Times the component stream to ejabberd came back", registers: [registry] }),
    componentOnline: new Gauge({ name: "parley_component_online", help: "1 while the component stream to ejabberd is open", registers: [registry] }),
    upgradesRefused: new Counter({
      name: "parley_visitor_upgrades_refused_total",
      help: "Visitor WebSocket connections refused, by reason (unknown_site, origin, rate_limited, unavailable, shutting_down)",
      labelNames: ["reason"] as const,
      registers: [registry],
    }),
    frameErrors: new Counter({ name: "parley_visitor_frame_errors_total", help: "Visitor frames refused, by error code", labelNames: ["code"] as const, registers: [registry] }),
    eventLoopLag: new Gauge({
      name: "parley_event_loop_lag_seconds",
      help: "Event-loop delay of this process since it started (perf_hooks.monitorEventLoopDelay), by quantile",
      labelNames: ["quantile"] as const,
      registers: [registry],
      collect() {
        if (!loopDelay) return;
        for (const q of [50, 99]) this.set({ quantile: String(q / 100) }, loopDelay.percentile(q) / 1e9);
        this.set({ quantile: "1" }, loopDelay.max / 1e9);
      },
    }),
    chats: new Gauge({
      name: "parley_chats",
      help: "Chats by state, over all sites",
      labelNames: ["state"] as const,
      registers: [registry],
      async collect() {
        try {
          for (const [state, count] of Object.entries(await chatStateCounts())) this.set({ state }, count);
        } catch {
          // The store is down: /healthz says so; keep the last values rather than fail the scrape.
        }
      },
    }),
  };
  return metrics;
}

export type Metrics = ReturnType<typeof createMetrics>;
