/**
 * Chaos, EventoDB side: the server goes away mid-run, then answers garbage, stalls past the client's timeout and
 * drops pokes. Producer, sender and consumer run as processes of their own; see `test/chaos/harness.ts`.
 *
 * "Stopped and restarted" is played by the fault proxy (`down()` closes its port and every connection, `up()` opens
 * it again), not by killing the server: the in-process server keeps its data in memory, so a real restart would lose
 * what was delivered. Against a real server (`EVENTODB_URL`) the proxy is used the same way.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { assertClean, finish, handled, makeWorld, stalls, startAll } from "./chaos/harness.js"

const events = 400
const streams = 40

const producer = [
  "producer",
  "producer",
  { CHAOS_EVENTS: String(events), CHAOS_STREAMS: String(streams), CHAOS_BATCH: "4", CHAOS_INTERVAL_MS: "40" }
] as const

describe("Chaos: EventoDB faults", () => {
  it.scopedLive(
    "an EventoDB outage mid-run pauses delivery and consumption, which resume with nothing lost",
    () =>
      Effect.gen(function*() {
        const started = Date.now()
        const world = yield* makeWorld("outage")
        yield* startAll(world, [["sender", "sender"], ["consumer", "consumer", { CHAOS_CONSUMER_ID: "c1" }], producer])
        world.report["startupMs"] = Date.now() - started

        yield* world.waitFor("a quarter is delivered", (s) => s.sent >= events / 4)
        const downAt = Date.now()
        yield* world.proxy.down()
        yield* Effect.sleep("3 seconds")
        const during = yield* world.latest
        // Whatever was in flight when the port closed has settled by now: nothing may move until it opens again.
        yield* Effect.sleep("1 second")
        const stalled = yield* world.latest
        const upAt = Date.now()
        yield* world.proxy.up()
        const [delivery, consumption] = yield* Effect.all([
          world.recovery("delivery", upAt, (s) => s.sent),
          world.recovery("consumption", upAt, handled("c1"))
        ], { concurrency: 2 })
        yield* world.waitFor(
          "everything is delivered and handled",
          (s) => s.sent === events && handled("c1")(s) === events
        )

        Object.assign(world.report, {
          events,
          streams,
          outageMs: upAt - downAt,
          backlogAtUp: stalled.written - stalled.sent,
          firstProgressAfterUpMs: { delivery, consumption },
          stallsFromDown: yield* stalls(world, downAt, ["c1"]),
          drainAfterUpMs: Date.now() - upAt
        })
        assert.strictEqual(stalled.sent, during.sent, "nothing can be delivered while EventoDB is away")
        assert.isBelow(stalled.sent, events)
        // Downtime is nobody's fault: it must not count against any row (LESSONS.md 6).
        const counted = yield* world.sql<{ n: number }>`
          SELECT count(*)::int AS n FROM evento_outbox WHERE attempts > 0
        `.pipe(Effect.orDie)
        assert.strictEqual(counted[0]?.n, 0, "no row has an attempt counted against it")

        const result = yield* finish(world, { events, consumers: [{ consumerId: "c1" }] })
        yield* assertClean(world, result)
      }),
    120_000
  )

  it.scopedLive(
    "garbage answers, a stall past the timeout and dropped pokes cost time, never a message",
    () =>
      Effect.gen(function*() {
        const started = Date.now()
        const world = yield* makeWorld("garbage")
        // A one-second client timeout, so that the stall outlasts it; a slow fallback poll, so that a consumer left
        // without pokes is seen to rely on it.
        const timeouts = { EVENTODB_TIMEOUT: "1 second" }
        const consumer = { ...timeouts, CHAOS_CONSUMER_ID: "c1", CHAOS_TRANSACTIONAL: "false", CHAOS_POLL_MS: "500" }
        yield* startAll(world, [["sender", "sender", timeouts], ["consumer", "consumer", consumer], producer])
        world.report["startupMs"] = Date.now() - started

        yield* world.waitFor("some rows are delivered", (s) => s.sent >= 60)
        const garbageAt = Date.now()
        yield* world.proxy.garbageNext(8)
        yield* world.recovery("delivery after garbage", garbageAt, (s) => s.sent)

        yield* world.waitFor("more rows are delivered", (s) => s.sent >= 150)
        const stallAt = Date.now()
        const stallMs = 2500
        yield* world.proxy.stall(`${stallMs} millis`)
        yield* Effect.sleep(`${stallMs} millis`)
        const stallEnd = Date.now()
        const [delivery, consumption] = yield* Effect.all([
          world.recovery("delivery after the stall", stallEnd, (s) => s.sent),
          world.recovery("consumption after the stall", stallEnd, handled("c1"))
        ], { concurrency: 2 })

        yield* world.waitFor("most rows are delivered", (s) => s.sent >= 250)
        const dropAt = Date.now()
        yield* world.proxy.dropPokes(true)
        yield* world.waitFor("everything is delivered", (s) => s.sent === events)
        const deliveredAt = Date.now()
        yield* world.waitFor("everything is handled without pokes", (s) => handled("c1")(s) === events)

        Object.assign(world.report, {
          events,
          streams,
          garbage: { answers: 8, ...(yield* stalls(world, garbageAt, ["c1"], stallAt)) },
          stall: {
            stallMs,
            clientTimeoutMs: 1000,
            firstProgressAfterStallMs: { delivery, consumption },
            ...(yield* stalls(world, stallAt, ["c1"], dropAt))
          },
          droppedPokes: {
            ...(yield* stalls(world, dropAt, ["c1"])),
            catchUpAfterLastDeliveryMs: Date.now() - deliveredAt
          }
        })
        const result = yield* finish(world, { events, consumers: [{ consumerId: "c1" }] })
        yield* assertClean(world, result)
      }),
    120_000
  )
})
