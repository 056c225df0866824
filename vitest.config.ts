import { defineConfig } from "vitest/config";

// Three projects so the fast loop (`npm run test:unit`) never starts a server:
// unit tests are pure; integration and e2e tests start private ejabberd/Redis/browser
// instances on free ports (see test/support/), so files can run in parallel.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: "unit",
          include: ["test/unit/**/*.test.ts"],
          // Projects with different worker limits must run as ordered groups.
          sequence: { groupOrder: 0 },
        },
      },
      {
        test: {
          name: "integration",
          include: ["test/integration/**/*.test.ts"],
          // The chaos scenario has a project of its own, run on demand (`npm run test:chaos`).
          exclude: ["test/integration/chaos.test.ts"],
          sequence: { groupOrder: 1 },
          testTimeout: 60_000,
          hookTimeout: 60_000,
          // expect.poll waits for an event; its default 1 s is too short for a change that
          // crosses ejabberd, the bridge and Redis on a loaded 2-core CI machine.
          expect: { poll: { timeout: 10_000 } },
          // 2-core machine: each file starts its own ejabberd (Erlang VM), so keep
          // concurrency low to avoid starving the processes under test.
          maxWorkers: 2,
        },
      },
      {
        test: {
          // Every failure at once under load, for ~60 s (test/integration/chaos.test.ts): it
          // finds rare races, so it is not part of `npm test`; PARLEY_TEST_CHAOS_SEED replays one.
          name: "chaos",
          include: ["test/integration/chaos.test.ts"],
          sequence: { groupOrder: 3 },
          testTimeout: 120_000,
          hookTimeout: 90_000,
          maxWorkers: 1,
        },
      },
      {
        test: {
          name: "e2e",
          include: ["test/e2e/**/*.test.ts"],
          sequence: { groupOrder: 2 },
          testTimeout: 90_000,
          hookTimeout: 90_000,
          expect: { poll: { timeout: 10_000 } },
          maxWorkers: 1,
        },
      },
    ],
  },
});
