/**
 * Chaos, handler side: a handler that always fails on one message (park: it is parked and the rest go on; stop: the
 * consumer stops before it, restarts, and never skips it), and a slow handler (the consumer holds at most a batch or
 * two in memory). Producer, sender and consumers run as processes of their own; see `test/chaos/harness.ts`.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { allStats, assertClean, finish, handled, makeWorld, readCategory, rssOf, startAll } from "./chaos/harness.js"

const events = 300
const streams = 30

describe("Chaos: handlers", () => {
  it.scopedLive(
    "a handler failing on one message: park moves past it, stop halts before it and never skips it",
    () =>
      Effect.gen(function*() {
        const started = Date.now()
        const world = yield* makeWorld("poison")
        const poison = 150
        const failing = { CHAOS_FAIL_ON: String(poison) }
        const [, , stopper] = yield* startAll(world, [
          ["sender", "sender"],
          ["consumer", "parker", {
            ...failing,
            CHAOS_CONSUMER_ID: "parker",
            CHAOS_ON_FAILURE: "park",
            CHAOS_TRANSACTIONAL: "false"
          }],
          ["consumer", "stopper", { ...failing, CHAOS_CONSUMER_ID: "stopper", CHAOS_ON_FAILURE: "stop" }],
          ["producer", "producer", {
            CHAOS_EVENTS: String(events),
            CHAOS_STREAMS: String(streams),
            CHAOS_BATCH: "10",
            CHAOS_INTERVAL_MS: "20"
          }]
        ])
        world.report["startupMs"] = Date.now() - started

        yield* world.waitFor(
          "everything is delivered and the parker is done",
          (s) => s.sent === events && handled("parker")(s) === events - 1
        )
        const messages = yield* readCategory(world)
        const poisoned = messages.find((message) => message.data["n"] === poison)
        assert.isDefined(poisoned)
        const before = messages.filter((message) => message.globalPosition < poisoned!.globalPosition).length
        yield* world.waitFor("the stopper reached the poison", (s) => handled("stopper")(s) === before)

        // The stopper's layer starts it again 500 ms after each stop (plus the singleton's fence); every run must stop
        // at the same message.
        const restarts = Effect.map(
          stopper!.stderr,
          (lines) => lines.filter((line) => line.includes("Consumer stopped; restarting after the delay")).length
        )
        const waitedFrom = Date.now()
        while ((yield* restarts) < 2) {
          if (Date.now() - waitedFrom > 30_000) return assert.fail("the stopper did not stop twice")
          yield* Effect.sleep("50 millis")
        }
        const later = yield* world.latest
        assert.strictEqual(handled("stopper")(later), before, "nothing past the poison is handled")

        const parkedRows = yield* world.sql<{ error: string; attempts: number }>`
        SELECT error, attempts FROM evento_parked_messages WHERE consumer_id = 'parker'
      `.pipe(Effect.orDie)
        assert.strictEqual(parkedRows.length, 1)
        assert.strictEqual(parkedRows[0]?.attempts, 2)
        assert.include(parkedRows[0]?.error ?? "", "Poisoned")

        Object.assign(world.report, {
          events,
          streams,
          poisonGlobalPosition: poisoned!.globalPosition,
          stopperHandledBeforePoison: before,
          stopperStops: yield* restarts
        })
        const result = yield* finish(world, {
          events,
          consumers: [
            { consumerId: "parker", parked: [poison] },
            { consumerId: "stopper", stopsAt: poison }
          ]
        })
        yield* assertClean(world, result)
      }),
    120_000
  )

  it.scopedLive(
    "a slow handler: the consumer holds at most two batches fetched ahead, and its memory stays flat",
    () =>
      Effect.gen(function*() {
        const started = Date.now()
        const world = yield* makeWorld("slow")
        const batchSize = 10
        const [, consumer] = yield* startAll(world, [
          ["sender", "sender"],
          ["consumer", "slow", {
            CHAOS_CONSUMER_ID: "slow",
            CHAOS_SLOW_MS: "15",
            CHAOS_BATCH_SIZE: String(batchSize),
            CHAOS_TRANSACTIONAL: "false"
          }],
          // Everything at once: the backlog is what a slow handler must not pull into memory.
          ["producer", "producer", {
            CHAOS_EVENTS: String(events),
            CHAOS_STREAMS: String(streams),
            CHAOS_BATCH: "50",
            CHAOS_INTERVAL_MS: "0"
          }]
        ])
        world.report["startupMs"] = Date.now() - started

        const rss: Array<number> = []
        yield* Effect.sync(() => {
          const value = rssOf(consumer!.pid)
          if (value !== undefined) rss.push(value)
        }).pipe(Effect.zipRight(Effect.sleep("100 millis")), Effect.forever, Effect.forkScoped)

        const delivered = yield* world.waitFor("everything is delivered", (s) => s.sent === events)
        const backlog = events - handled("slow")(delivered)
        yield* world.waitFor("everything is handled", (s) => handled("slow")(s) === events, "90 seconds")
        const stats = yield* allStats(consumer!)
        const last = stats[stats.length - 1]
        assert.isDefined(last)
        const mb = (bytes: number) => Math.round(bytes / 1024 / 1024)

        Object.assign(world.report, {
          events,
          streams,
          batchSize,
          handlerMs: 15,
          backlogWhenAllDelivered: backlog,
          maxFetchedNotHandled: last!.maxUnhandled,
          fetches: last!.fetches,
          rssMb: { min: mb(Math.min(...rss)), max: mb(Math.max(...rss)), samples: rss.length },
          heapUsedMb: { first: mb(stats[0]!.heapUsed), last: mb(last!.heapUsed) }
        })
        assert.isAbove(backlog, 5 * batchSize, "the handler fell behind, as meant")
        assert.isAtMost(last!.maxUnhandled, 2 * batchSize, "never more than two batches fetched ahead")
        assert.isAtLeast(last!.fetches, events / batchSize, "fetched batch by batch")
        assert.isBelow(Math.max(...rss), 512 * 1024 * 1024)

        const result = yield* finish(world, { events, consumers: [{ consumerId: "slow" }] })
        yield* assertClean(world, result)
      }),
    120_000
  )
})
