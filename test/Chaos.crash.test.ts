/**
 * Chaos, process side: the sender leader killed with SIGKILL, a consumer group member killed with SIGKILL mid-batch.
 * Producers, senders and consumers run as processes of their own; see `test/chaos/harness.ts`.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import {
  assertClean,
  type Child,
  finish,
  handled,
  isLeader,
  killHard,
  makeWorld,
  readCategory,
  shareSize,
  stalls,
  startAll,
  type World
} from "./chaos/harness.js"

const events = 400
const streams = 40

/** The child's last `fetched <count> <first> <last>` line. */
const lastFetch = (child: Child) =>
  Effect.map(child.stdout, (lines) => {
    const line = [...lines].reverse().find((l) => l.startsWith("fetched "))
    if (line === undefined) return undefined
    const [, count, first, last] = line.split(" ").map(Number)
    return { count: count!, first: first!, last: last! }
  })

const handledBetween = (world: World, consumerId: string, first: number, last: number) =>
  world.sql<{ n: number }>`
    SELECT count(DISTINCT event_id)::int AS n FROM chaos_handled
    WHERE consumer_id = ${consumerId} AND global_position BETWEEN ${first} AND ${last}
  `.pipe(Effect.map((rows) => rows[0]?.n ?? 0), Effect.orDie)

describe("Chaos: crashes", () => {
  it.scopedLive(
    "kill -9 of the sender leader mid-run: the standby takes over, nothing lost or doubled",
    () =>
      Effect.gen(function*() {
        const started = Date.now()
        const world = yield* makeWorld("killsender")
        const [a, b] = yield* startAll(world, [
          ["sender", "sender-a"],
          ["sender", "sender-b"],
          ["consumer", "consumer", { CHAOS_CONSUMER_ID: "c1" }],
          ["producer", "producer", {
            CHAOS_EVENTS: String(events),
            CHAOS_STREAMS: String(streams),
            CHAOS_BATCH: "4",
            CHAOS_INTERVAL_MS: "40"
          }]
        ])
        world.report["startupMs"] = Date.now() - started
        // Slow answers stretch each batch, so that the kill lands between EventoDB's answers and the batch's UPDATE.
        yield* world.proxy.latency("10 millis")

        yield* world.waitFor("a quarter is delivered", (s) => s.sent >= events / 4)
        const name = `outbox-sender:${world.namespace}`
        // Exactly one leads (a hand-over under load may show none or both for a moment).
        const leaders = yield* Effect.filter([a!, b!], (child) => isLeader(child, name)).pipe(
          Effect.flatMap((found) => found.length === 1 ? Effect.succeed(found) : Effect.fail("not one" as const)),
          Effect.retry(Schedule.spaced("50 millis").pipe(Schedule.upTo("20 seconds"))),
          Effect.orElse(() => Effect.dieMessage("no single sender leads"))
        )
        const leader = leaders[0]!
        const standby = leader === a ? b! : a!

        const killedAt = Date.now()
        yield* killHard(leader)
        const inEvento = new Set((yield* readCategory(world)).map((message) => message.id))
        const unmarked = yield* world.sql<{ id: string }>`
        SELECT id::text AS id FROM evento_outbox WHERE sent_at IS NULL
      `.pipe(Effect.orDie)
        const deliveredUnmarked = unmarked.filter((row) => inEvento.has(row.id)).length
        const recoveryMs = yield* world.recovery("delivery", killedAt, (s) => s.sent)
        assert.isTrue(yield* isLeader(standby, name), "the standby leads now")
        yield* world.proxy.latency(0)
        yield* world.waitFor(
          "everything is delivered and handled",
          (s) => s.sent === events && handled("c1")(s) === events
        )

        Object.assign(world.report, {
          events,
          streams,
          senders: 2,
          deliveredUnmarkedAtKill: deliveredUnmarked,
          firstProgressMs: recoveryMs,
          ...(yield* stalls(world, killedAt, ["c1"]))
        })
        const result = yield* finish(world, { events, consumers: [{ consumerId: "c1" }] })
        yield* assertClean(world, result)
      }),
    120_000
  )

  it.scopedLive(
    "kill -9 of a consumer group member mid-batch: its replacement resumes, each message handled once",
    () =>
      Effect.gen(function*() {
        const started = Date.now()
        const world = yield* makeWorld("killconsumer")
        const member = (index: number, name = `member-${index}`) =>
          [
            "consumer",
            name,
            {
              CHAOS_CONSUMER_ID: `member-${index}`,
              CHAOS_GROUP_MEMBER: String(index),
              CHAOS_GROUP_SIZE: "2",
              CHAOS_SLOW_MS: "8",
              CHAOS_BATCH_SIZE: "20"
            }
          ] as const
        const [, first] = yield* startAll(world, [
          ["sender", "sender"],
          member(0),
          member(1),
          ["producer", "producer", {
            CHAOS_EVENTS: String(events),
            CHAOS_STREAMS: String(streams),
            CHAOS_BATCH: "10",
            CHAOS_INTERVAL_MS: "20"
          }]
        ])
        world.report["startupMs"] = Date.now() - started
        const victim = first!
        const share = shareSize(world, events, streams, 0, 2)

        // Kill while the batch it fetched last is partly handled: some of its messages committed, some not.
        yield* world.waitFor("member-0 handled a quarter of its share", (s) => handled("member-0")(s) >= share / 4)
        let batch: { readonly count: number; readonly first: number; readonly last: number } | undefined
        const deadline = Date.now() + 30_000
        while (batch === undefined) {
          const fetched = yield* lastFetch(victim)
          if (fetched !== undefined && fetched.count > 2) {
            const done = yield* handledBetween(world, "member-0", fetched.first, fetched.last)
            if (done > 0 && done < fetched.count - 1) batch = fetched
          }
          if (batch === undefined) {
            if (Date.now() > deadline) return assert.fail("never caught member-0 mid-batch")
            yield* Effect.sleep("2 millis")
          }
        }
        const killedAt = Date.now()
        yield* killHard(victim)
        const doneInBatch = yield* handledBetween(world, "member-0", batch.first, batch.last)
        assert.isAbove(doneInBatch, 0)
        assert.isBelow(doneInBatch, batch.count, "the kill landed mid-batch")

        const [replacement] = yield* startAll(world, [member(0, "member-0-replacement")])
        const replacementReadyMs = Date.now() - killedAt
        const recoveryMs = yield* world.recovery("member-0", killedAt, handled("member-0"))
        yield* world.waitFor(
          "everything is delivered and handled",
          (s) => s.sent === events && handled("member-0")(s) + handled("member-1")(s) === events
        )
        const byReplacement = (yield* replacement!.stdout).some((line) => line.startsWith("fetched "))
        assert.isTrue(byReplacement, "the replacement did the rest")

        Object.assign(world.report, {
          events,
          streams,
          group: 2,
          share,
          batch,
          handledOfBatchAtKill: doneInBatch,
          replacementReadyMs,
          firstProgressMs: recoveryMs,
          ...(yield* stalls(world, killedAt, ["member-0", "member-1"]))
        })
        const result = yield* finish(world, {
          events,
          consumers: [
            { consumerId: "member-0", group: { member: 0, size: 2 } },
            { consumerId: "member-1", group: { member: 1, size: 2 } }
          ]
        })
        yield* assertClean(world, result)
      }),
    120_000
  )
})
