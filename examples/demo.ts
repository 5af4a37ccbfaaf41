/**
 * `npm run demo`: partnership applications becoming leads, end to end.
 *
 * Producers change application rows and write each change's event in the same transaction through `Outbox`;
 * `OutboxSender.layer` ships the events to EventoDB; a consumer group of `--members` builds the `demo_leads` read
 * model in PostgreSQL. At the end the demo checks EventoDB and PostgreSQL against each other, prints the results on
 * stdout and exits non-zero if any check fails. Logs and progress go to stderr.
 *
 *   npm run demo -- --events 2000 --streams 50 --members 3 --duration 15
 *
 * Without `DATABASE_URL` it starts an embedded PostgreSQL, without `EVENTODB_URL` the in-process EventoDB server;
 * see `examples/demo/infra.ts` for the keys.
 */
import * as Command from "@effect/cli/Command"
import * as HelpDoc from "@effect/cli/HelpDoc"
import * as Options from "@effect/cli/Options"
import * as ValidationError from "@effect/cli/ValidationError"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as SqlClient from "@effect/sql/SqlClient"
import * as Console from "effect/Console"
import * as Data from "effect/Data"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as Schedule from "effect/Schedule"
import { randomBytes, randomUUID } from "node:crypto"
import {
  Consumer,
  EventoClient,
  Idempotency,
  Migrations,
  Outbox,
  OutboxSender,
  PositionStore,
  Singleton
} from "../src/index.js"
import * as Infra from "./demo/infra.js"
import * as Leads from "./demo/leads.js"
import { verify } from "./demo/verify.js"

class DemoFailed extends Data.TaggedError("DemoFailed")<{ readonly message: string }> {}

interface Flags {
  readonly events: number
  readonly streams: number
  readonly members: number
  readonly duration: number
}

const positive = (name: string) =>
  Options.integer(name).pipe(
    Options.mapEffect((value) =>
      value >= 1
        ? Effect.succeed(value)
        : Effect.fail(ValidationError.invalidValue(HelpDoc.p(`--${name} must be at least 1`)))
    )
  )

const flags = {
  events: positive("events").pipe(
    Options.withDefault(2000),
    Options.withDescription("Events the producers write")
  ),
  streams: positive("streams").pipe(
    Options.withDefault(50),
    Options.withDescription("Applications, one stream each; events go round-robin over them")
  ),
  members: positive("members").pipe(
    Options.withDefault(3),
    Options.withDescription("Members of the consumer group that builds the read model")
  ),
  duration: Options.float("duration").pipe(
    Options.withDefault(15),
    Options.withDescription("Seconds the producers spread their writes over, at least (0: as fast as they can)")
  )
}

/** Where each thing runs, and the names this run uses. */
interface Run extends Flags {
  readonly runId: string
  readonly namespace: string
  readonly category: string
}

/** Sender and consumer group, running in the scope they are built in. */
const workers = (run: Run, ready: ReadonlyArray<Deferred.Deferred<void>>) =>
  Layer.mergeAll(
    OutboxSender.layer(),
    ...ready.map((deferred, member) =>
      Consumer.layer({
        category: run.category,
        consumerId: `leads-${member}`,
        group: { member, size: run.members },
        transactional: true,
        handler: Leads.handlerFor(run.runId, member, deferred)
      })
    )
  ).pipe(Layer.provide(Layer.mergeAll(PositionStore.layer, Idempotency.layer, Singleton.layer)))

/**
 * Probes through the outbox, one stream after another, until every member has handled one: then the sender and the
 * whole group are running, and start-up (leadership takes a few seconds) is not counted in the latency.
 */
const awaitReady = (run: Run, ready: ReadonlyArray<Deferred.Deferred<void>>) =>
  Effect.gen(function*() {
    let k = 0
    const allReady = Effect.map(Effect.forEach(ready, Deferred.isDone), (done) => done.every(Boolean))
    yield* Effect.suspend(() => Leads.probe(run.category, k++)).pipe(
      Effect.zipRight(allReady),
      Effect.repeat({ schedule: Schedule.spaced("50 millis"), until: (done) => done }),
      Effect.timeoutFail({
        duration: "60 seconds",
        onTimeout: () => new DemoFailed({ message: "the sender and the consumer group did not start in 60 seconds" })
      })
    )
  })

/**
 * Event `i` is change `n = i / streams` of application `i % streams`; one producer owns each application, so its
 * changes are written in order. Writes are spread evenly over `--duration`; a producer that falls behind shifts the
 * rest of its schedule rather than catching up in a burst.
 */
const produce = (run: Run, applications: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const producers = Math.min(4, applications.length)
    const interval = (run.duration * 1000) / run.events
    const start = Leads.now()
    yield* Effect.forEach(
      Array.from({ length: producers }, (_, p) => p),
      (p) =>
        Effect.gen(function*() {
          let late = 0
          for (let i = 0; i < run.events; i++) {
            const s = i % applications.length
            if (s % producers !== p) continue
            const wait = start + i * interval + late - Leads.now()
            if (wait > 0) yield* Effect.sleep(Duration.millis(wait))
            else late -= wait
            yield* Leads.change(run.runId, run.category, applications[s]!, Math.floor(i / applications.length))
          }
        }),
      { concurrency: "unbounded", discard: true }
    )
  })

const count = (query: (sql: SqlClient.SqlClient) => Effect.Effect<ReadonlyArray<{ readonly n: string }>, unknown>) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) => Effect.map(Effect.orDie(query(sql)), (rows) => Number(rows[0]?.n)))

const progress = (run: Run) =>
  Effect.gen(function*() {
    const written = yield* count((sql) =>
      sql<{ n: string }>`
        SELECT count(*)::text AS n FROM evento_outbox
        WHERE namespace = ${run.namespace} AND split_part(stream, '-', 1) = ${run.category}
          AND type <> 'ReadinessProbe'
      `
    )
    const sent = yield* count((sql) =>
      sql<{ n: string }>`
        SELECT count(*)::text AS n FROM evento_outbox
        WHERE namespace = ${run.namespace} AND split_part(stream, '-', 1) = ${run.category}
          AND type <> 'ReadinessProbe' AND sent_at IS NOT NULL
      `
    )
    const handled = yield* handledCount(run)
    yield* Console.error(`progress: written ${written}/${run.events}, sent ${sent}, handled ${handled}`)
  })

const handledCount = (run: Run) =>
  count((sql) =>
    sql<{ n: string }>`SELECT count(DISTINCT event_id)::text AS n FROM demo_deliveries WHERE run_id = ${run.runId}`
  )

const awaitHandled = (run: Run) =>
  handledCount(run).pipe(
    Effect.repeat({ schedule: Schedule.spaced("50 millis"), until: (handled) => handled >= run.events }),
    Effect.timeout("60 seconds"),
    Effect.catchTag("TimeoutException", () => Effect.logWarning("not every event was handled within 60 seconds"))
  )

const formatMs = (ms: number) => `${ms.toFixed(1)} ms`

const demo = (flags: Flags) =>
  Effect.gen(function*() {
    const runId = `${Date.now().toString(36)}${randomBytes(2).toString("hex")}`
    const database = yield* Infra.postgres
    const evento = yield* Infra.evento(runId)
    // A namespace of our own keeps the plain category name; a shared one gets a category for this run.
    const category = evento.fresh ? "partnership" : `partnership_${runId}`
    const run: Run = { ...flags, runId, namespace: evento.namespace, category }
    yield* Effect.logInfo("demo starting").pipe(
      Effect.annotateLogs({ ...flags, postgres: database.description, eventodb: evento.description, category })
    )

    const Clients = Layer.mergeAll(
      PgClient.layer({ url: database.url, maxConnections: 20 }),
      EventoClient.layer({ url: evento.url, token: evento.token })
    )

    const report = yield* Effect.gen(function*() {
      yield* Migrations.up()
      yield* Leads.createTables
      const applications = Array.from({ length: Math.min(run.streams, run.events) }, () => randomUUID())

      yield* Effect.gen(function*() {
        const ready = yield* Effect.all(Array.from({ length: run.members }, () => Deferred.make<void>()))
        yield* Layer.build(workers(run, ready))
        yield* awaitReady(run, ready)
        yield* Effect.logInfo("sender and consumer group running; producing")

        const started = Leads.now()
        yield* progress(run).pipe(
          Effect.repeat(Schedule.spaced("2 seconds")),
          Effect.delay("2 seconds"),
          Effect.forkScoped
        )
        yield* produce(run, applications)
        yield* awaitHandled(run)
        yield* Effect.logInfo("done").pipe(Effect.annotateLogs({ seconds: (Leads.now() - started) / 1000 }))
      }).pipe(
        Effect.provide(Outbox.layer()),
        Effect.scoped // stops the sender and the consumers
      )

      return yield* verify({ ...run, streams: applications.length })
    }).pipe(Effect.provide(Clients))

    const lines = [
      ...report.checks.map((check) => `${check.name}: ${check.ok ? "ok" : "FAILED"} (${check.detail})`),
      `latency outbox write -> handler: p50 ${formatMs(report.latency.p50)}, p95 ${formatMs(report.latency.p95)}, p99 ${
        formatMs(report.latency.p99)
      }`
    ]
    const failed = report.checks.filter((check) => !check.ok).length
    const verdict = failed === 0 ? "all checks passed" : `${failed} ${failed === 1 ? "check" : "checks"} FAILED`
    yield* Console.log([...lines, verdict].join("\n"))
    if (failed > 0) return yield* new DemoFailed({ message: verdict })
  }).pipe(Effect.scoped, Effect.provide(NodeHttpClient.layerUndici))

const command = Command.make("demo", flags, demo).pipe(
  Command.withDescription("eventodb-kit demo: outbox, sender and a consumer group building a read model")
)

Command.run(command, { name: "eventodb-kit demo", version: "0.1.0" })(process.argv).pipe(
  Effect.tapErrorCause((cause) => Effect.logError("demo failed", cause)),
  Effect.provide(NodeContext.layer),
  Effect.provide(Logger.replace(Logger.defaultLogger, Logger.withConsoleError(Logger.logfmtLogger))),
  (program) => NodeRuntime.runMain(program, { disableErrorReporting: true, disablePrettyLogger: true })
)
