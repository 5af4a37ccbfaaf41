/**
 * Chaos, database side: PostgreSQL terminates every connection of the kit (pool, LISTEN and singleton lock
 * connections), twice, while producers write and the sender and consumers work. Producers, sender and consumers run as
 * processes of their own; see `test/chaos/harness.ts`.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import {
  assertClean,
  countLines,
  finish,
  makeWorld,
  type Sample,
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
  // Materialized first, so that the planner cannot call pg_terminate_backend before the filter has run.
  world.sql`
    WITH kit AS MATERIALIZED (
      SELECT pid, application_name
      FROM pg_stat_activity
      WHERE datname = current_database()
        AND pid <> pg_backend_pid()
        AND application_name <> 'chaos-controller'
    )
    SELECT pid, application_name FROM kit WHERE pg_terminate_backend(pid)
  `.pipe(
    Effect.flatMap(Schema.decodeUnknown(Schema.Array(Terminated))),
    Effect.map((rows) => {
      const byApplication: Record<string, number> = {}
      for (const row of rows) byApplication[row.application_name] = (byApplication[row.application_name] ?? 0) + 1
      return byApplication
    }),
    Effect.orDie
  )

describe("Chaos: terminated connections", () => {
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
        yield* assertClean(world, result)
      }),
    150_000
  )
})
