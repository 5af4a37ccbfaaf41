/**
 * The metrics and spans of docs/observability.md, read the way an exporter reads them: an outbox-to-consumer flow
 * runs against the target EventoDB and real PostgreSQL, then `Metric.snapshot` is searched by name and tags, and a
 * test `Tracer` has collected the spans.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { assert, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as Metric from "effect/Metric"
import * as MetricState from "effect/MetricState"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Tracer from "effect/Tracer"
import * as fs from "node:fs"
import * as Cleanup from "../src/Cleanup.js"
import * as Consumer from "../src/Consumer.js"
import { EventoClient } from "../src/EventoClient.js"
import * as Idempotency from "../src/Idempotency.js"
import { metrics as senderMetrics } from "../src/internal/sender.js"
import * as Migrations from "../src/Migrations.js"
import * as Outbox from "../src/Outbox.js"
import * as OutboxSender from "../src/OutboxSender.js"
import * as PositionStore from "../src/PositionStore.js"
import * as EventoTest from "./support/EventoTest.js"
import * as PgTest from "./support/PgTest.js"

const TestLayer = Layer.mergeAll(PositionStore.layer, Idempotency.layer, Outbox.layer()).pipe(
  Layer.provideMerge(Layer.mergeAll(
    Layer.effectDiscard(Effect.orDie(Migrations.up())).pipe(Layer.provideMerge(PgTest.layer)),
    EventoTest.layer
  )),
  // The parked row below logs at error level on purpose.
  Layer.provideMerge(Logger.replace(Logger.defaultLogger, Logger.none))
)

/** What an exporter would read for `name` with exactly these tags, if anything. */
const metricState = (name: string, tags: Record<string, string>) =>
  Effect.map(Metric.snapshot, (pairs) =>
    Option.fromNullable(
      pairs.find((pair) =>
        pair.metricKey.name === name &&
        pair.metricKey.tags.length === Object.keys(tags).length &&
        pair.metricKey.tags.every((label) => tags[label.key] === label.value)
      )
    ).pipe(Option.map((pair) => pair.metricState)))

const counter = (name: string, tags: Record<string, string>) =>
  Effect.map(
    metricState(name, tags),
    Option.match({
      onNone: () => assert.fail(`no counter ${name} ${JSON.stringify(tags)}`),
      onSome: (state) => MetricState.isCounterState(state) ? Number(state.count) : assert.fail(`${name} not a counter`)
    })
  )

const gauge = (name: string, tags: Record<string, string>) =>
  Effect.map(
    metricState(name, tags),
    Option.match({
      onNone: () => assert.fail(`no gauge ${name} ${JSON.stringify(tags)}`),
      onSome: (state) => MetricState.isGaugeState(state) ? Number(state.value) : assert.fail(`${name} not a gauge`)
    })
  )

const histogramCount = (name: string, tags: Record<string, string>) =>
  Effect.map(
    metricState(name, tags),
    Option.match({
      onNone: () => assert.fail(`no histogram ${name} ${JSON.stringify(tags)}`),
      onSome: (state) => MetricState.isHistogramState(state) ? state.count : assert.fail(`${name} not a histogram`)
    })
  )

interface Recorded {
  readonly name: string
  readonly span: Tracer.Span
}

/** A tracer that records every span it starts and otherwise behaves as the one in place. */
const recordingTracer = Effect.map(Effect.tracer, (native) => {
  const spans: Array<Recorded> = []
  const tracer = Tracer.make({
    span: (name, parent, context, links, startTime, kind, options) => {
      const span = native.span(name, parent, context, links, startTime, kind, options)
      spans.push({ name, span })
      return span
    },
    context: (f, fiber) => native.context(f, fiber)
  })
  return { tracer, spans }
})

const parentName = (recorded: Recorded, all: ReadonlyArray<Recorded>): string | undefined =>
  Option.match(recorded.span.parent, {
    onNone: () => undefined,
    onSome: (parent) => all.find((other) => other.span === parent)?.name
  })

const documentation = fs.readFileSync(new URL("../docs/observability.md", import.meta.url), "utf8")

let categories = 0

layer(TestLayer, { excludeTestServices: true, timeout: "120 seconds" })("Observability", (it) => {
  it.scoped("an outbox-to-consumer flow moves the documented metrics and produces the documented spans", () =>
    Effect.gen(function*() {
      const client = yield* EventoClient
      const sql = yield* SqlClient.SqlClient
      const namespace = client.namespace
      const category = `obs${(categories++).toString(36)}x${Math.random().toString(36).slice(2, 8)}`
      const { spans, tracer } = yield* recordingTracer

      yield* Effect.gen(function*() {
        // Five events over two streams, and one whose expected version cannot hold: it is parked at once.
        yield* Outbox.writeBatch(
          Array.from({ length: 5 }, (_, n) => ({
            stream: `${category}-${n % 2}`,
            message: { type: "Happened", data: { n } }
          }))
        ).pipe(sql.withTransaction)
        yield* Outbox.write(`${category}-9`, { type: "Doomed", data: {} }, { expectedVersion: 5 })

        assert.strictEqual(yield* OutboxSender.drain, 5)

        const handled: Array<number> = []
        const consumer = yield* Consumer.run({
          category,
          consumerId: "observer",
          pollInterval: "100 millis",
          handler: (message) => Effect.sync(() => handled.push(message.globalPosition))
        }).pipe(Effect.forkScoped)
        yield* Effect.sync(() => handled.length).pipe(
          Effect.repeat({ until: (n) => n >= 5, schedule: Schedule.spaced("20 millis") }),
          Effect.timeout("20 seconds"),
          Effect.orDie
        )
        const consumerTags = { namespace, category, consumer_id: "observer" }
        // The lag settles to 0 once the position is saved and the consumer has seen it is caught up.
        yield* metricState("eventodb_consumer_lag", consumerTags).pipe(
          Effect.repeat({
            until: Option.exists((state) => MetricState.isGaugeState(state) && Number(state.value) === 0),
            schedule: Schedule.spaced("50 millis")
          }),
          Effect.timeout("10 seconds"),
          Effect.orDie
        )
        yield* Fiber.interrupt(consumer)

        yield* Cleanup.once({ namespace, sentRetention: 0 })
      }).pipe(Effect.withTracer(tracer))

      // Outbox sender.
      const ns = { namespace }
      assert.strictEqual(yield* counter("eventodb_outbox_sent_total", ns), 5)
      assert.strictEqual(yield* counter("eventodb_outbox_parked_total", ns), 1)
      assert.strictEqual(yield* gauge("eventodb_outbox_backlog", ns), 1)
      assert.strictEqual(yield* gauge("eventodb_outbox_parked", ns), 1)
      assert.isAtLeast(yield* gauge("eventodb_outbox_oldest_unsent_age_seconds", ns), 0)

      // Consumer.
      const tags = { namespace, category, consumer_id: "observer" }
      assert.strictEqual(yield* counter("eventodb_consumer_handled_total", tags), 5)
      assert.strictEqual(yield* histogramCount("eventodb_consumer_handler_duration_ms", tags), 5)
      assert.strictEqual(yield* gauge("eventodb_consumer_lag", tags), 0)

      // Cleanup: the five sent rows go, the parked one stays.
      assert.strictEqual(yield* counter("eventodb_cleanup_outbox_removed_total", ns), 5)

      // Spans: the flow's public methods, nested where the work is nested, all ended.
      const names = new Set(spans.map((recorded) => recorded.name))
      for (
        const expected of [
          "Outbox.writeBatch",
          "Outbox.write",
          "OutboxSender.drain",
          "OutboxSender.send",
          "EventoClient.streamWrite",
          "EventoClient.categoryGet",
          "Consumer.batch",
          "Cleanup.once"
        ]
      ) assert.isTrue(names.has(expected), `no span ${expected}; saw ${[...names].join(", ")}`)
      const sends = spans.filter((recorded) => recorded.name === "OutboxSender.send")
      assert.strictEqual(sends.length, 6)
      for (const send of sends) assert.strictEqual(parentName(send, spans), "OutboxSender.drain")
      const writes = spans.filter((recorded) =>
        recorded.name === "EventoClient.streamWrite" && parentName(recorded, spans) === "OutboxSender.send"
      )
      assert.strictEqual(writes.length, 6)
      for (const recorded of spans) assert.strictEqual(recorded.span.status._tag, "Ended", recorded.name)

      // Every span the flow produced, and every metric the kit registered, is on the documentation page.
      const ours = (name: string) =>
        /^(Evento|Outbox|Consumer|Cleanup|PositionStore|Idempotency|Singleton|Migr)/.test(name)
      for (const name of names) {
        if (ours(name)) assert.include(documentation, `\`${name}\``, `span ${name} is not documented`)
      }
      // A metric reaches the registry on first use; reading each one the kit defines registers the ones this flow
      // did not move (parking, duplicates...), so the check runs both ways.
      yield* Effect.all([
        Metric.value(senderMetrics.sent),
        Metric.value(senderMetrics.parked),
        Metric.value(senderMetrics.backlog),
        Metric.value(senderMetrics.parkedNow),
        Metric.value(senderMetrics.oldestAge),
        Metric.value(Consumer.metrics.lag),
        Metric.value(Consumer.metrics.handled),
        Metric.value(Consumer.metrics.parked),
        Metric.value(Consumer.metrics.duplicatesSkipped),
        Metric.value(Consumer.metrics.handlerDuration),
        Metric.value(Consumer.metrics.unknownTypes),
        Metric.value(Cleanup.metrics.outboxRemoved),
        Metric.value(Cleanup.metrics.marksRemoved)
      ])
      const metricNames = new Set((yield* Metric.snapshot).map((pair) => pair.metricKey.name))
      for (const name of metricNames) {
        if (name.startsWith("evento")) assert.include(documentation, `\`${name}\``, `metric ${name} is not documented`)
      }
      for (const documented of documentation.matchAll(/`(eventodb?_[a-z_]+)`/g)) {
        assert.isTrue(metricNames.has(documented[1]!), `documented metric ${documented[1]} does not exist`)
      }
    }))
})
