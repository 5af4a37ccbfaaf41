/**
 * Chaos, process and database side: every kit connection terminated by PostgreSQL, the sender leader killed with
 * SIGKILL, a consumer group member killed with SIGKILL mid-batch. Producers, senders and consumers run as processes
 * of their own; see `test/chaos/harness.ts`.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import {
  type Child,
  countLines,
  finish,
  handled,
  isLeader,
  killHard,
  makeWorld,
  printReport,
  readCategory,
  type Sample,
  shareSize,
  stalls,
  startAll,
  type World
} from "./chaos/harness.js"

const events = 400
const streams = 40

const total = (sample: Sample) => Object.values(sample.handled).reduce((sum, n) => sum + n, 0)

const Terminated = Schema.Struct({ pid: Schema.Number, application_name: Schema.String })

/** Terminates every backend of the scenario's database but the controller's own; yields who was cut off. */
const terminateKitConnections = (world: World) =>
  world.sql`
    SELECT pid, application_name
    FROM pg_stat_activity
    WHERE datname = current_database()
      AND pid <> pg_backend_pid()
      AND application_name <> 'chaos-controller'
      AND pg_terminate_backend(pid)
  `.pipe(
    Effect.flatMap(Schema.decodeUnknown(Schema.Array(Terminated))),
    Effect.map((rows) => {
      const byApplication: Record<string, number> = {}
      for (const row of rows) byApplication[row.application_name] = (byApplication[row.application_name] ?? 0) + 1
      return byApplication
    }),
    Effect.orDie
  )

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
    "pg_terminate_backend on every kit connection, twice: producers, sender and consumers carry on",
    () =>
      Effect.gen(function*() {
        const started = Date.now()
        const world = yield* makeWorld("terminate")
        const producer = (index: number) =>
          [
            "producer",
            `producer-${index}`,
            {
              CHAOS_EVENTS: String(events),
              CHAOS_STREAMS: String(streams),
              CHAOS_PRODUCERS: "2",
              CHAOS_PRODUCER_INDEX: String(index),
              CHAOS_BATCH: "1",
              CHAOS_INTERVAL_MS: "40"
            }
          ] as const
        const member = (index: number) =>
          [
            "consumer",
            `member-${index}`,
            { CHAOS_CONSUMER_ID: `member-${index}`, CHAOS_GROUP_MEMBER: String(index), CHAOS_GROUP_SIZE: "2" }
          ] as const
        yield* startAll(world, [["sender", "sender"], member(0), member(1), producer(0), producer(1)])
        world.report["startupMs"] = Date.now() - started

        const rounds: Array<Record<string, unknown>> = []
        const times: Array<number> = []
        // The first round lands while the producers still write, the second after they are done.
        const triggers: ReadonlyArray<readonly [string, (s: Sample) => boolean]> = [
          ["the sender delivers and the producers are a quarter done", (s) => s.sent > 0 && s.written >= events / 4],
          ["most rows are delivered", (s) => s.sent >= (events * 5) / 8]
        ]
        for (const [what, when] of triggers) {
          yield* world.waitFor(what, when)
          const at = Date.now()
          times.push(at)
          const terminated = yield* terminateKitConnections(world)
          const [writeMs, sentMs, handledMs] = yield* Effect.all([
            world.latest.pipe(
              Effect.flatMap((s) =>
                s.written < events ? world.recovery("writing", at, (x) => x.written) : Effect.succeed(null)
              )
            ),
            world.recovery("delivery", at, (s) => s.sent),
            world.recovery("consumption", at, total)
          ], { concurrency: 3 })
          rounds.push({ terminated, firstProgressMs: { writing: writeMs, delivery: sentMs, consumption: handledMs } })
          const kit = Object.values(terminated).reduce((sum, n) => sum + n, 0)
          assert.isAtLeast(kit, 5, `every kit process had a connection to cut: ${JSON.stringify(terminated)}`)
        }
        yield* world.waitFor("everything is delivered and handled", (s) => s.sent === events && total(s) === events)

        for (const [i, at] of times.entries()) {
          Object.assign(rounds[i]!, yield* stalls(world, at, ["member-0", "member-1"], times[i + 1]))
        }
        const kit = world.children.filter((child) => child.role === "producer" || child.role === "consumer")
        const defects = yield* Effect.forEach(kit, (child) =>
          Effect.map(
            Effect.all([countLines(child, "defect "), countLines(child, "Consumer stopped; restarting")]),
            ([died, restarted]) => [child.name, { writesDied: died, consumerRestarts: restarted }] as const
          ))
        Object.assign(world.report, { events, streams, producers: 2, rounds, ...Object.fromEntries(defects) })
        const result = yield* finish(world, {
          events,
          consumers: [
            { consumerId: "member-0", group: { member: 0, size: 2 } },
            { consumerId: "member-1", group: { member: 1, size: 2 } }
          ]
        })
        yield* printReport(world)
        assert.deepStrictEqual(result.problems, [])
        assert.deepStrictEqual(result.unclean, [])
        assert.deepStrictEqual(result.strays, [])
      }),
    150_000
  )

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
        const leaders = yield* Effect.filter([a!, b!], (child) => isLeader(child, name))
        assert.strictEqual(leaders.length, 1, "exactly one sender leads")
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
        yield* printReport(world)
        assert.deepStrictEqual(result.problems, [])
        assert.deepStrictEqual(result.unclean, [])
        assert.deepStrictEqual(result.strays, [])
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
        yield* printReport(world)
        assert.deepStrictEqual(result.problems, [])
        assert.deepStrictEqual(result.unclean, [])
        assert.deepStrictEqual(result.strays, [])
      }),
    120_000
  )
})
