/**
 * The chaos controller: builds one scenario's world (a fresh database, an EventoDB, a namespace, a `FaultProxy` in
 * front of the server), starts the kit's processes (`producer.ts`, `sender.ts`, `consumer.ts`) against it, samples
 * progress from the database, measures recovery times, and checks the end state from the databases.
 *
 * EventoDB is the real server named by `EVENTODB_URL` and `EVENTODB_ADMIN_TOKEN` when both are set, else the
 * in-process server run as a process of its own (`eventodb-kit dev-server --port 0`). The kit's processes reach it
 * only through the proxy; the controller reads it directly.
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as PgClient from "@effect/sql-pg/PgClient"
import { SqlClient } from "@effect/sql/SqlClient"
import { assert } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import { randomBytes } from "node:crypto"
import { readdirSync, readFileSync } from "node:fs"
import { type AddressInfo, createServer } from "node:net"
import * as EventoClient from "../../src/EventoClient.js"
import * as FaultProxy from "../../src/FaultProxy.js"
import { defaultAdminToken } from "../../src/internal/memory/token.js"
import { groupMember } from "../../src/internal/streamName.js"
import * as Migrations from "../../src/Migrations.js"
import * as EventoTest from "../support/EventoTest.js"
import * as PgTest from "../support/PgTest.js"
import { type ExitStatus, type NodeProcess, spawnTs } from "../support/Processes.js"

export type Role = "producer" | "sender" | "consumer"

export interface Child extends NodeProcess {
  readonly role: Role | "dev-server"
  readonly name: string
  /** Set once the controller killed it with SIGKILL on purpose. */
  killed: boolean
}

/** One look at the database: rows written, rows marked sent, handler rows per consumer. */
export interface Sample {
  readonly t: number
  readonly written: number
  readonly sent: number
  readonly handled: Readonly<Record<string, number>>
}

export interface World {
  readonly scenario: string
  /** Every process of the scenario carries `CHAOS_RUN=<runId>` in its environment. */
  readonly runId: string
  readonly namespace: string
  readonly category: string
  readonly databaseUrl: string
  readonly proxy: FaultProxy.FaultProxy.Service
  /** Straight to the server, for checks. */
  readonly direct: EventoClient.EventoClient.Service
  /** The controller's connection pool (application_name `chaos-controller`). */
  readonly sql: SqlClient
  readonly children: Array<Child>
  readonly spawn: (role: Role, name: string, env?: Record<string, string>) => Effect.Effect<Child, Error, Scope.Scope>
  /** Completes once the server answers and the scenario's namespace exists. */
  readonly serverReady: Effect.Effect<void, Error>
  readonly latest: Effect.Effect<Sample>
  /** Polls the samples until `predicate` holds; fails with `what` after `timeout`. */
  readonly waitFor: (
    what: string,
    predicate: (sample: Sample) => boolean,
    timeout?: Duration.DurationInput
  ) => Effect.Effect<Sample, Error>
  /**
   * Milliseconds from `since` (a `Date.now()` taken when a fault was injected or cleared) to the first sample in
   * which `metric` grew past its value at that moment.
   */
  readonly recovery: (
    what: string,
    since: number,
    metric: (sample: Sample) => number,
    timeout?: Duration.DurationInput
  ) => Effect.Effect<number, Error>
  /**
   * After a fault at `since` (and before `until`, default now): the longest stretch in which work was `pending` but
   * `metric` did not grow, and how long after `since` that stretch ended. Unlike the first progress, this sees past
   * work that was already in flight when the fault hit.
   */
  readonly stall: (
    since: number,
    metric: (sample: Sample) => number,
    pending: (sample: Sample) => boolean,
    until?: number
  ) => Effect.Effect<Stall>
  /** Figures to report, printed as one line when the scenario ends. */
  readonly report: Record<string, unknown>
}

export interface Stall {
  readonly longestMs: number
  readonly resumedAfterMs: number
}

/** The longest stall in `samples` after `since` and before `until`; see `World.stall`. */
export const longestStall = (
  samples: ReadonlyArray<Sample>,
  since: number,
  metric: (sample: Sample) => number,
  pending: (sample: Sample) => boolean,
  until: number
): Stall => {
  let longest = 0
  let endedAt = since
  let previous = [...samples].reverse().find((sample) => sample.t <= since)
  let stalledFrom: number | undefined
  for (const sample of samples) {
    if (sample.t <= since || sample.t > until) continue
    if (previous !== undefined && metric(sample) > metric(previous)) {
      if (stalledFrom !== undefined && sample.t - stalledFrom > longest) {
        longest = sample.t - stalledFrom
        endedAt = sample.t
      }
      stalledFrom = undefined
    } else if (stalledFrom === undefined && pending(sample)) {
      stalledFrom = Math.max(since, previous?.t ?? sample.t)
    }
    previous = sample
  }
  return { longestMs: longest, resumedAfterMs: endedAt - since }
}

export const handled = (consumerId: string) => (sample: Sample): number => sample.handled[consumerId] ?? 0

const SampleRow = Schema.Struct({
  written: Schema.Number,
  sent: Schema.Number,
  handled: Schema.NullOr(Schema.Record({ key: Schema.String, value: Schema.Number }))
})

let counter = 0

/** A TCP port free right now on 127.0.0.1, for the server process to listen on. */
const freePort = Effect.async<number>((resume) => {
  const probe = createServer()
  probe.listen(0, "127.0.0.1", () => {
    const { port } = probe.address() as AddressInfo
    probe.close(() => resume(Effect.succeed(port)))
  })
})

const serverFromEnv = (): EventoTest.Target | undefined => {
  const url = process.env.EVENTODB_URL
  const adminToken = process.env.EVENTODB_ADMIN_TOKEN
  return url && adminToken
    ? { url: url.replace(/\/+$/, ""), adminToken: Redacted.make(adminToken), external: true }
    : undefined
}

/** Builds a scenario's world; everything in it (processes included) ends with the scope. */
export const makeWorld = (scenario: string): Effect.Effect<World, Error, Scope.Scope> =>
  Effect.gen(function*() {
    const runId = `${scenario}-${process.pid}-${(counter++).toString(36)}-${Math.random().toString(36).slice(2, 8)}`
    const children: Array<Child> = []
    const report: Record<string, unknown> = {}

    const track = (role: Child["role"], name: string, process: NodeProcess): Child => {
      const child: Child = Object.assign(Object.create(null), process, { role, name, killed: false })
      children.push(child)
      return child
    }

    // The server process (unless a real server is configured) boots while the database is prepared and the kit's
    // processes start: they all get its address and the namespace's token up front. The kit makes no EventoDB call
    // before its singletons' fence has passed, seconds after `ready`, and the namespace exists long before that.
    const external = serverFromEnv()
    const port = external === undefined ? yield* freePort : 0
    const server = external === undefined
      ? track(
        "dev-server",
        "dev-server",
        yield* spawnTs("src/bin.ts", {
          args: ["dev-server", "--port", String(port), "--token", defaultAdminToken],
          env: { CHAOS_RUN: runId }
        })
      )
      : undefined
    const target: EventoTest.Target = external ??
      { url: `http://127.0.0.1:${port}`, adminToken: Redacted.make(defaultAdminToken), external: false }
    const namespace = `chaos-${runId.toLowerCase().replace(/[^a-z0-9]+/g, "-")}`
    const token = Redacted.make(`ns_${Buffer.from(namespace).toString("base64url")}_${randomBytes(32).toString("hex")}`)
    const createNamespace = Effect.acquireRelease(
      EventoTest.adminRpc(target, ["ns.create", namespace, { description: "chaos", token: Redacted.value(token) }]),
      () => EventoTest.adminRpc(target, ["ns.delete", namespace]).pipe(Effect.catchAllDefect(() => Effect.void))
    )
    const serverReady = yield* (server === undefined ? Effect.void : server.waitForLine(
      (line) => line === `listening on ${target.url}`,
      "60 seconds"
    )).pipe(Effect.zipRight(createNamespace), Effect.asVoid, Effect.forkScoped)

    const database = yield* PgTest.freshDatabase
    const context = yield* Layer.build(
      PgClient.layer({ url: Redacted.make(database.url), maxConnections: 3, applicationName: "chaos-controller" })
    ).pipe(Effect.orDie)
    const sql = Context.get(context, SqlClient)
    yield* Migrations.up().pipe(Effect.provideService(SqlClient, sql), Effect.orDie)
    yield* sql`
      CREATE TABLE chaos_handled (
        id bigserial PRIMARY KEY,
        consumer_id text NOT NULL,
        event_id uuid NOT NULL,
        stream text NOT NULL,
        position bigint NOT NULL,
        global_position bigint NOT NULL,
        pid integer NOT NULL,
        handled_at timestamptz NOT NULL DEFAULT clock_timestamp()
      )
    `.pipe(Effect.orDie)

    const proxy = yield* FaultProxy.make({ upstream: target.url })
    // The HTTP client's dispatcher lives as long as the world.
    const http = yield* Layer.build(NodeHttpClient.layerUndici)
    const direct = yield* EventoClient.make({ url: target.url, token }).pipe(Effect.provide(http), Effect.orDie)
    const category = `chaos${scenario.replace(/[^a-z0-9]/gi, "").toLowerCase()}${
      Math.random().toString(36).slice(2, 7)
    }`

    const common = {
      DATABASE_URL: database.url,
      EVENTODB_URL: proxy.url,
      EVENTODB_TOKEN: Redacted.value(token),
      EVENTODB_TIMEOUT: "2 seconds",
      CHAOS_CATEGORY: category,
      CHAOS_RUN: runId
    }
    const spawn = (role: Role, name: string, env: Record<string, string> = {}) =>
      Effect.map(
        spawnTs(`test/chaos/${role}.ts`, { env: { ...common, ...env } }),
        (process) => track(role, name, process)
      )

    const samples: Array<Sample> = []
    const take = sql`
      SELECT
        (SELECT count(*) FROM evento_outbox)::int AS written,
        (SELECT count(*) FROM evento_outbox WHERE sent_at IS NOT NULL)::int AS sent,
        (SELECT json_object_agg(consumer_id, n) FROM (
          SELECT consumer_id, count(*)::int AS n FROM chaos_handled GROUP BY consumer_id
        ) AS h) AS handled
    `.pipe(
      Effect.flatMap((rows) => Schema.decodeUnknown(SampleRow)(rows[0])),
      Effect.map((row): Sample => ({
        t: Date.now(),
        written: row.written,
        sent: row.sent,
        handled: row.handled ?? {}
      })),
      Effect.tap((sample) => Effect.sync(() => void samples.push(sample)))
    )
    const first = yield* Effect.orDie(take)
    yield* take.pipe(
      Effect.catchAllCause((cause) => Effect.logWarning("chaos sampler failed", cause)),
      Effect.repeat(Schedule.spaced("40 millis")),
      Effect.forkScoped
    )
    const latest = Effect.sync(() => samples[samples.length - 1] ?? first)

    const waitFor = (
      what: string,
      predicate: (sample: Sample) => boolean,
      timeout: Duration.DurationInput = "60 seconds"
    ): Effect.Effect<Sample, Error> =>
      Effect.gen(function*() {
        const deadline = Date.now() + Duration.toMillis(Duration.decode(timeout))
        while (true) {
          const sample = yield* latest
          if (predicate(sample)) return sample
          if (Date.now() > deadline) {
            const tails = yield* Effect.forEach(
              children,
              (child) =>
                Effect.map(
                  child.stderr,
                  (lines) => `--- ${child.name} (pid ${child.pid}):\n${lines.slice(-8).join("\n")}`
                )
            )
            return yield* Effect.fail(
              new Error(
                `${scenario}: timed out waiting until ${what}; last sample ${JSON.stringify(sample)}\n${
                  tails.join("\n")
                }`
              )
            )
          }
          yield* Effect.sleep("20 millis")
        }
      })

    const recovery = (
      what: string,
      since: number,
      metric: (sample: Sample) => number,
      timeout: Duration.DurationInput = "60 seconds"
    ) =>
      Effect.gen(function*() {
        const base = metric(yield* latest)
        const sample = yield* waitFor(`${what} progresses again`, (s) => s.t > since && metric(s) > base, timeout)
        return sample.t - since
      })

    const stall = (
      since: number,
      metric: (sample: Sample) => number,
      pending: (sample: Sample) => boolean,
      until?: number
    ) => Effect.sync(() => longestStall(samples, since, metric, pending, until ?? Date.now()))

    return {
      scenario,
      runId,
      namespace,
      category,
      databaseUrl: database.url,
      proxy,
      direct,
      sql,
      children,
      spawn,
      serverReady: Fiber.join(serverReady),
      latest,
      waitFor,
      recovery,
      stall,
      report
    }
  })

/** Waits for a child's `ready` line (its layers are built and it works). */
export const ready = (child: Child, timeout: Duration.DurationInput = "60 seconds") =>
  child.waitForLine((line) => line === "ready", timeout).pipe(Effect.asVoid)

/** True while the child leads the named singleton: its last `leader`/`follower` line for it says `leader`. */
export const isLeader = (child: Child, name: string): Effect.Effect<boolean> =>
  Effect.map(child.stdout, (lines) => {
    const last = [...lines].reverse().find((line) => line === `leader ${name}` || line === `follower ${name}`)
    return last === `leader ${name}`
  })

/** How many lines of the child's stdout and stderr contain `text`. */
export const countLines = (child: Child, text: string): Effect.Effect<number> =>
  Effect.map(
    Effect.all([child.stdout, child.stderr]),
    ([out, err]) => [...out, ...err].filter((line) => line.includes(text)).length
  )

/** Kills the child with SIGKILL and waits until it is gone. */
export const killHard = (child: Child) =>
  Effect.gen(function*() {
    child.killed = true
    yield* child.kill("SIGKILL")
    return yield* child.exited
  })

/** The last `stats` line of a consumer child, parsed. */
export const lastStats = (child: Child) =>
  Effect.map(child.stdout, (lines) => {
    const line = [...lines].reverse().find((l) => l.startsWith("stats "))
    return line === undefined ? undefined : JSON.parse(line.slice("stats ".length)) as ConsumerStats
  })

export interface ConsumerStats {
  readonly rss: number
  readonly heapUsed: number
  readonly maxUnhandled: number
  readonly unhandled: number
  readonly fetches: number
  readonly handled: number
}

/** Every `stats` line of a consumer child so far. */
export const allStats = (child: Child) =>
  Effect.map(
    child.stdout,
    (lines) =>
      lines.filter((l) => l.startsWith("stats ")).map((l) => JSON.parse(l.slice("stats ".length)) as ConsumerStats)
  )

/** The resident set size of a live process, from /proc, in bytes (undefined once it is gone). */
export const rssOf = (pid: number): number | undefined => {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8")
    const match = /^VmRSS:\s+(\d+) kB$/m.exec(status)
    return match === null ? undefined : Number(match[1]) * 1024
  } catch {
    return undefined
  }
}

/** The PIDs of live processes whose environment carries `CHAOS_RUN=<runId>`, from /proc. */
export const processesOfRun = (runId: string): ReadonlyArray<number> => {
  const marker = `CHAOS_RUN=${runId}\u0000`
  const found: Array<number> = []
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const environ = readFileSync(`/proc/${entry}/environ`, "latin1")
      const state = /^State:\s+(\S)/m.exec(readFileSync(`/proc/${entry}/status`, "utf8"))?.[1]
      if (`${environ}\u0000`.includes(marker) && state !== "Z") found.push(Number(entry))
    } catch {
      // Gone meanwhile, or not ours to read.
    }
  }
  return found
}

export interface Stopped {
  readonly name: string
  readonly pid: number
  readonly status: ExitStatus
  readonly stopMs: number
}

/**
 * Stops every child still running with SIGTERM and waits for each (SIGKILL after `grace`). Yields how each one
 * ended; a graceful stop is exit code 0.
 */
export const stopAll = (children: ReadonlyArray<Child>, grace: Duration.DurationInput = "15 seconds") =>
  Effect.forEach(children, (child) =>
    Effect.gen(function*() {
      const start = Date.now()
      if (!child.killed) yield* child.kill("SIGTERM")
      const status = yield* child.exited.pipe(
        Effect.timeoutTo({
          duration: grace,
          onSuccess: (status) => status,
          onTimeout: () => undefined
        })
      )
      if (status === undefined) {
        yield* child.kill("SIGKILL")
        const forced = yield* child.exited
        return {
          name: `${child.name} (did not stop within ${Duration.format(Duration.decode(grace))})`,
          pid: child.pid,
          status: forced,
          stopMs: Date.now() - start
        }
      }
      return { name: child.name, pid: child.pid, status, stopMs: Date.now() - start }
    }), { concurrency: "unbounded" })

// --- verification ---

export interface ConsumerSpec {
  readonly consumerId: string
  readonly group?: { readonly member: number; readonly size: number }
  /** `data.n` of events this consumer parks. */
  readonly parked?: ReadonlyArray<number>
  /** `data.n` of the event this consumer stops before (onFailure "stop"). */
  readonly stopsAt?: number
}

export interface Expectations {
  readonly events: number
  readonly consumers: ReadonlyArray<ConsumerSpec>
}

const OutboxRow = Schema.Struct({
  id: Schema.String,
  stream: Schema.String,
  seq: Schema.Number,
  n: Schema.Number,
  sent: Schema.Boolean,
  parked: Schema.Boolean,
  attempts: Schema.Number
})

const HandledRow = Schema.Struct({
  id: Schema.Number,
  event_id: Schema.String,
  stream: Schema.String,
  position: Schema.Number,
  global_position: Schema.Number
})

const EventRow = Schema.Struct({ event_id: Schema.String })
const PositionRow = Schema.Struct({ position: Schema.Number })

/** Every message of the category, read page by page straight from the server. */
export const readCategory = (world: World) =>
  Effect.gen(function*() {
    const all: Array<EventoClient.Message> = []
    let position = 0
    while (true) {
      const page = yield* world.direct.categoryGet(world.category, { position, batchSize: 1000 })
      all.push(...page)
      const last = page[page.length - 1]
      if (last === undefined || page.length < 1000) return all
      position = last.globalPosition + 1
    }
  }).pipe(Effect.orDie)

/** What a message needs for the checks (an `EventoClient.Message` has it). */
export interface MessageView {
  readonly id: string
  readonly streamName: string
  readonly position: number
  readonly globalPosition: number
}

export interface ConsumerObserved {
  /** Rows of `chaos_handled`, in insertion order: one per handler run that committed. */
  readonly handled: ReadonlyArray<typeof HandledRow.Type>
  readonly parked: ReadonlyArray<string>
  readonly marks: ReadonlyArray<string>
  /** The saved position; undefined when none was saved. */
  readonly position: number | undefined
}

/** The end state of a run, as read from both databases. */
export interface Observed {
  readonly outbox: ReadonlyArray<typeof OutboxRow.Type>
  readonly messages: ReadonlyArray<MessageView>
  readonly consumers: Readonly<Record<string, ConsumerObserved>>
}

/**
 * Every problem in an end state (none when all is well):
 * - the outbox holds each event once, all sent, none parked;
 * - EventoDB holds one message per outbox id, nothing else, each stream in `seq` order at positions 0, 1, 2...;
 * - each consumer handled each message of its share exactly once, in stream order, parked exactly the messages it
 *   should, marked what it handled or parked and nothing else, and saved the global position of the last of them.
 */
export const check = (observed: Observed, expected: Expectations): ReadonlyArray<string> => {
  const problems: Array<string> = []
  const rows = observed.outbox
  const ns = new Set(rows.map((row) => row.n))
  if (rows.length !== expected.events || ns.size !== expected.events) {
    problems.push(`outbox: ${rows.length} rows for ${ns.size} distinct events, expected ${expected.events} each`)
  }
  const unsent = rows.filter((row) => !row.sent)
  if (unsent.length > 0) problems.push(`outbox: ${unsent.length} rows not sent`)
  const parked = rows.filter((row) => row.parked)
  if (parked.length > 0) problems.push(`outbox: ${parked.length} rows parked`)

  const messages = observed.messages
  const byId = new Map<string, number>()
  for (const message of messages) byId.set(message.id, (byId.get(message.id) ?? 0) + 1)
  const twice = [...byId].filter(([, count]) => count > 1)
  if (twice.length > 0) problems.push(`EventoDB: ${twice.length} message ids more than once`)
  const outboxIds = new Set(rows.map((row) => row.id))
  const missing = rows.filter((row) => !byId.has(row.id))
  const foreign = messages.filter((message) => !outboxIds.has(message.id))
  if (missing.length > 0) problems.push(`EventoDB: ${missing.length} outbox rows missing`)
  if (foreign.length > 0) problems.push(`EventoDB: ${foreign.length} messages with no outbox row`)
  if (messages.length !== rows.length) problems.push(`EventoDB: ${messages.length} messages for ${rows.length} rows`)

  const expectedOrder = new Map<string, Array<string>>()
  for (const row of [...rows].sort((a, b) => a.seq - b.seq)) {
    expectedOrder.set(row.stream, [...(expectedOrder.get(row.stream) ?? []), row.id])
  }
  const actualOrder = new Map<string, Array<MessageView>>()
  for (const message of messages) {
    actualOrder.set(message.streamName, [...(actualOrder.get(message.streamName) ?? []), message])
  }
  let disordered = 0
  for (const [stream, ids] of expectedOrder) {
    const actual = [...(actualOrder.get(stream) ?? [])].sort((a, b) => a.position - b.position)
    const positionsOk = actual.every((message, i) => message.position === i)
    if (!positionsOk || actual.map((message) => message.id).join(",") !== ids.join(",")) disordered++
  }
  if (disordered > 0) problems.push(`EventoDB: ${disordered} streams not in outbox seq order`)

  const nOf = new Map(rows.map((row) => [row.id, row.n]))
  for (const spec of expected.consumers) {
    const label = `consumer ${spec.consumerId}`
    const seen = observed.consumers[spec.consumerId] ?? { handled: [], parked: [], marks: [], position: undefined }
    const share = messages
      .filter((message) =>
        spec.group === undefined || groupMember(message.streamName, spec.group.size) === spec.group.member
      )
      .sort((a, b) => a.globalPosition - b.globalPosition)
    const parkedNs = new Set(spec.parked ?? [])
    const poison = spec.stopsAt === undefined ? undefined : share.find((m) => nOf.get(m.id) === spec.stopsAt)
    if (spec.stopsAt !== undefined && poison === undefined) problems.push(`${label}: its poison is not in its share`)
    const reached = poison === undefined ? share : share.filter((m) => m.globalPosition < poison.globalPosition)
    const shouldPark = reached.filter((m) => parkedNs.has(nOf.get(m.id) ?? -1))
    const shouldHandle = reached.filter((m) => !parkedNs.has(nOf.get(m.id) ?? -1))

    const counts = new Map<string, number>()
    for (const row of seen.handled) counts.set(row.event_id, (counts.get(row.event_id) ?? 0) + 1)
    const duplicates = [...counts.values()].filter((count) => count > 1).length
    if (duplicates > 0) problems.push(`${label}: ${duplicates} messages handled more than once`)
    const notHandled = shouldHandle.filter((m) => !counts.has(m.id))
    if (notHandled.length > 0) problems.push(`${label}: ${notHandled.length} messages of its share not handled`)
    const shouldIds = new Set(shouldHandle.map((m) => m.id))
    const extra = [...counts.keys()].filter((id) => !shouldIds.has(id))
    if (extra.length > 0) problems.push(`${label}: ${extra.length} messages handled that it should not have`)
    const lastPosition = new Map<string, number>()
    let outOfOrder = 0
    for (const row of seen.handled) {
      if ((lastPosition.get(row.stream) ?? -1) >= row.position) outOfOrder++
      lastPosition.set(row.stream, row.position)
    }
    if (outOfOrder > 0) problems.push(`${label}: ${outOfOrder} handler runs out of stream order`)

    const parkedIds = new Set(seen.parked)
    if (parkedIds.size !== shouldPark.length || shouldPark.some((m) => !parkedIds.has(m.id))) {
      problems.push(`${label}: parked ${parkedIds.size} messages, expected ${shouldPark.length}`)
    }

    const marked = new Set(seen.marks)
    const done = [...shouldHandle, ...shouldPark]
    const unmarked = done.filter((m) => !marked.has(m.id))
    if (unmarked.length > 0) problems.push(`${label}: ${unmarked.length} handled or parked messages not marked`)
    if (poison !== undefined && marked.has(poison.id)) problems.push(`${label}: its poison message is marked`)
    if (marked.size !== done.length) problems.push(`${label}: ${marked.size} marks for ${done.length} messages`)

    const lastDone = Math.max(-1, ...done.map((m) => m.globalPosition))
    const position = seen.position ?? -1
    if (position !== lastDone) {
      problems.push(`${label}: saved position ${position}, the last message it handled or parked is at ${lastDone}`)
    }
  }
  return problems
}

/** Reads the end state of a run from both databases (see `check`). */
export const observe = (world: World, consumerIds: ReadonlyArray<string>): Effect.Effect<Observed> =>
  Effect.gen(function*() {
    const sql = world.sql
    const decode = <A, I>(schema: Schema.Schema<A, I>) => (rows: unknown) =>
      Schema.decodeUnknown(Schema.Array(schema))(rows).pipe(Effect.orDie)
    const outbox = yield* sql`
      SELECT id::text AS id, stream, seq::int AS seq, (data->>'n')::int AS n, sent_at IS NOT NULL AS sent,
        parked_at IS NOT NULL AS parked, attempts
      FROM evento_outbox
      WHERE namespace = ${world.namespace}
      ORDER BY seq
    `.pipe(Effect.orDie, Effect.flatMap(decode(OutboxRow)))
    const messages = yield* readCategory(world)
    const consumers: Record<string, ConsumerObserved> = {}
    for (const consumerId of consumerIds) {
      const key = sql`namespace = ${world.namespace} AND category = ${world.category} AND consumer_id = ${consumerId}`
      const handled = yield* sql`
        SELECT id::int AS id, event_id::text AS event_id, stream, position::int AS position,
          global_position::int AS global_position
        FROM chaos_handled
        WHERE consumer_id = ${consumerId}
        ORDER BY id
      `.pipe(Effect.orDie, Effect.flatMap(decode(HandledRow)))
      const parked = yield* sql`SELECT event_id::text AS event_id FROM evento_parked_messages WHERE ${key}`.pipe(
        Effect.orDie,
        Effect.flatMap(decode(EventRow))
      )
      const marks = yield* sql`SELECT event_id::text AS event_id FROM evento_processed_events WHERE ${key}`.pipe(
        Effect.orDie,
        Effect.flatMap(decode(EventRow))
      )
      const saved = yield* sql`SELECT position::int AS position FROM evento_consumer_positions WHERE ${key}`.pipe(
        Effect.orDie,
        Effect.flatMap(decode(PositionRow))
      )
      consumers[consumerId] = {
        handled,
        parked: parked.map((row) => row.event_id),
        marks: marks.map((row) => row.event_id),
        position: saved[0]?.position
      }
    }
    return { outbox, messages, consumers }
  })

/** Reads the end state and checks it; yields every problem found. */
export const verify = (world: World, expected: Expectations) =>
  Effect.map(observe(world, expected.consumers.map((spec) => spec.consumerId)), (observed) => ({
    problems: check(observed, expected),
    messages: observed.messages.length,
    outboxRows: observed.outbox.length
  }))

/**
 * Ends a scenario: stops the kit's processes (SIGTERM), checks the databases, stops the server process, and looks
 * for any process of the run still alive.
 */
export const finish = (world: World, expected: Expectations) =>
  Effect.gen(function*() {
    const kit = yield* stopAll(world.children.filter((child) => child.role !== "dev-server"))
    const result = yield* verify(world, expected)
    const server = yield* stopAll(world.children.filter((child) => child.role === "dev-server"))
    const stopped = [...kit, ...server]
    const killed = new Set(world.children.filter((child) => child.killed).map((child) => child.pid))
    const unclean = stopped.filter((s) =>
      killed.has(s.pid) ? s.status.signal !== "SIGKILL" : s.status.code !== 0 || s.name.includes("did not stop")
    )
    world.report["stopMs"] = Math.max(0, ...kit.map((s) => s.stopMs))
    return {
      ...result,
      unclean: unclean.map((s) => `${s.name} (pid ${s.pid}): ${JSON.stringify(s.status)}`),
      strays: processesOfRun(world.runId)
    }
  })

/** Starts the given processes at once and waits until each is ready. */
export const startAll = (
  world: World,
  entries: ReadonlyArray<readonly [Role, string, Record<string, string>?]>
) =>
  Effect.forEach(entries, ([role, name, env]) => world.spawn(role, name, env), { concurrency: "unbounded" }).pipe(
    Effect.tap((children) =>
      Effect.all([world.serverReady, Effect.forEach(children, (child) => ready(child), { concurrency: "unbounded" })], {
        concurrency: "unbounded"
      })
    )
  )

/** How many of `events` (n on stream `n % streams`) fall to `member` of a group of `size`. */
export const shareSize = (world: World, events: number, streams: number, member: number, size: number): number =>
  Array.from({ length: events }, (_, n) => `${world.category}-${n % streams}`).filter((stream) =>
    groupMember(stream, size) === member
  ).length

/**
 * After a fault at `since`: the longest stall of delivery (rows written but not sent) and of consumption (rows sent
 * but not handled by all of `consumers` together), and when each ended.
 */
export const stalls = (world: World, since: number, consumers: ReadonlyArray<string>, until?: number) => {
  const handledByAll = (sample: Sample) => consumers.reduce((sum, id) => sum + (sample.handled[id] ?? 0), 0)
  return Effect.all({
    delivery: world.stall(since, (s) => s.sent, (s) => s.written > s.sent, until),
    consumption: world.stall(since, handledByAll, (s) => s.sent > handledByAll(s), until)
  })
}

/** Prints the scenario's figures as one line (`chaos <scenario> {...}`), for the run's log and the report. */
export const printReport = (world: World) =>
  Effect.sync(() => console.log(`chaos ${world.scenario} ${JSON.stringify(world.report)}`))

/** Prints the report, then fails the scenario on any damage found, unclean exit or process left behind. */
export const assertClean = (
  world: World,
  result: {
    readonly problems: ReadonlyArray<string>
    readonly unclean: ReadonlyArray<string>
    readonly strays: ReadonlyArray<unknown>
  }
) =>
  Effect.gen(function*() {
    yield* printReport(world)
    assert.deepStrictEqual(result.problems, [])
    assert.deepStrictEqual(result.unclean, [])
    assert.deepStrictEqual(result.strays, [])
  })
