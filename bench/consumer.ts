/**
 * `npm run bench -- consumer`: how close a consumer comes to a bare read, and how fast an outbox write reaches it.
 *
 * 1. Throughput. N messages over M streams are written to one category. A plain loop of `categoryGet` (batches of
 *    100 from the last global position + 1) reads them all; then a `Consumer.run` in its default mode (positions
 *    and processed marks on PostgreSQL, a no-op handler) handles the same messages. Two rounds, alternating; the
 *    faster run of each counts. ratio = consumer throughput / plain throughput; the bar is 0.5. A small warm-up of
 *    both runs first.
 * 2. Latency. Messages go through `Outbox.write` at a steady rate (100 per second), shipped by `OutboxSender.run`
 *    and handled by a consumer woken by pokes (poll interval 1 second). Each message carries the time just before
 *    its outbox write; the handler takes the difference. Bars: p50 under 25 ms, p99 under 100 ms.
 *
 * Configuration: `BENCH_CONSUMER_EVENTS` (10000), `BENCH_CONSUMER_STREAMS` (100), `BENCH_CONSUMER_LATENCY_EVENTS`
 * (1000), `BENCH_CONSUMER_RATE` (100 per second), and `DATABASE_URL`, `EVENTODB_URL`, `EVENTODB_TOKEN`,
 * `EVENTODB_ADMIN_TOKEN` as in bench/support.ts.
 */
import * as Config from "effect/Config"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"
import * as Consumer from "../src/Consumer.js"
import * as EventoClient from "../src/EventoClient.js"
import * as Idempotency from "../src/Idempotency.js"
import * as Outbox from "../src/Outbox.js"
import * as OutboxSender from "../src/OutboxSender.js"
import * as PositionStore from "../src/PositionStore.js"
import { BenchError, type EventoTarget, mainWithTarget, type Outcome, round, runId, table } from "./support.js"

const ratioBar = 0.5
const p50Bar = 25
const p99Bar = 100
const batchSize = 100

const now = () => performance.timeOrigin + performance.now()

/** `events` messages over `streams` streams of `category`, written with a few writers in parallel. */
const fill = (category: string, events: number, streams: number) =>
  Effect.flatMap(EventoClient.EventoClient, (client) =>
    Effect.forEach(
      Array.from({ length: streams }, (_, s) => s),
      (s) =>
        Effect.forEach(
          Array.from({ length: Math.ceil((events - s) / streams) }, (_, i) => s + i * streams),
          (n) =>
            client.streamWrite(`${category}-${s}`, {
              type: "AmountDeposited",
              data: { n, accountId: `acc-${s}`, amount: (n % 97) * 10, currency: "EUR" },
              metadata: { correlationId: `bench-${n}` }
            }),
          { discard: true }
        ),
      { concurrency: 8, discard: true }
    ))

/** The bare loop: `categoryGet` from the last global position + 1 until a short batch. */
const plainRead = (category: string) =>
  Effect.gen(function*() {
    const client = yield* EventoClient.EventoClient
    let next = 0
    let count = 0
    while (true) {
      const batch = yield* client.categoryGet(category, { position: next, batchSize })
      count += batch.length
      const last = batch[batch.length - 1]
      if (last !== undefined) next = last.globalPosition + 1
      if (batch.length < batchSize) return count
    }
  })

/** A consumer from the start of `category`, interrupted once its handler has seen `events` messages. */
const consume = (category: string, consumerId: string, events: number) =>
  Effect.gen(function*() {
    let seen = 0
    const done = yield* Deferred.make<void>()
    const handler = () =>
      Effect.suspend(() => {
        seen += 1
        return seen === events ? Deferred.succeed(done, void 0) : Effect.void
      })
    const fiber = yield* Effect.fork(Consumer.run({ category, consumerId, batchSize, handler }))
    yield* Deferred.await(done)
    yield* Fiber.interrupt(fiber)
    return seen
  })

const timed = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const start = performance.now()
    const result = yield* effect
    return { result, seconds: (performance.now() - start) / 1000 }
  })

const percentile = (sorted: ReadonlyArray<number>, p: number): number =>
  sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? Number.NaN

/**
 * Writes `events` messages through the outbox at `rate` per second (fixed rate, not back to back) while a sender
 * and a consumer run, and yields each message's outbox-to-handler latency in milliseconds.
 */
const latencies = (category: string, events: number, rate: number) =>
  Effect.gen(function*() {
    const outbox = yield* Outbox.Outbox
    const results: Array<number> = []
    const done = yield* Deferred.make<void>()
    const handler = (message: EventoClient.Message) =>
      Effect.suspend(() => {
        results.push(now() - Number(message.data.sentAt))
        return results.length === events ? Deferred.succeed(done, void 0) : Effect.void
      })
    const consumer = yield* Effect.fork(Consumer.run({ category, consumerId: "latency", handler }))

    let n = 0
    const writer = yield* Effect.fork(
      Effect.suspend(() => {
        const i = n++
        return outbox.write(`${category}-${i % 10}`, { type: "Stamped", data: { n: i, sentAt: now() } })
      }).pipe(
        Effect.repeat(
          Schedule.fixed(Duration.millis(1000 / rate)).pipe(Schedule.intersect(Schedule.recurs(events - 1)))
        )
      )
    )
    yield* Fiber.join(writer)
    yield* Deferred.await(done).pipe(
      Effect.timeoutFail({
        duration: "60 seconds",
        onTimeout: () => new BenchError({ message: `only ${results.length} of ${events} messages were handled` })
      })
    )
    yield* Fiber.interrupt(consumer)
    return results
  })

const measure = (target: EventoTarget) =>
  Effect.gen(function*() {
    const events = yield* Config.integer("BENCH_CONSUMER_EVENTS").pipe(Config.withDefault(10000))
    const streams = yield* Config.integer("BENCH_CONSUMER_STREAMS").pipe(Config.withDefault(100))
    const latencyEvents = yield* Config.integer("BENCH_CONSUMER_LATENCY_EVENTS").pipe(Config.withDefault(1000))
    const rate = yield* Config.number("BENCH_CONSUMER_RATE").pipe(Config.withDefault(100))
    yield* Effect.logInfo("bench consumer").pipe(
      Effect.annotateLogs({ events, streams, latencyEvents, rate, evento: target.description })
    )
    const id = runId()

    // Warm-up: both paths on a tenth of the size, not measured.
    const warmup = Math.max(200, Math.floor(events / 10))
    yield* fill(`warm${id}`, warmup, streams)
    yield* plainRead(`warm${id}`)
    yield* consume(`warm${id}`, "bench", warmup)

    // Two rounds, alternating, over the same messages (each consumer round under a fresh consumer id); the faster
    // run of each path counts, so that a burst of load from elsewhere on the machine does not decide the ratio.
    yield* fill(`throughput${id}`, events, streams)
    const plainRuns: Array<number> = []
    const consumerRuns: Array<number> = []
    for (const round of [1, 2]) {
      const plainRun = yield* timed(plainRead(`throughput${id}`))
      const consumerRun = yield* timed(consume(`throughput${id}`, `bench-${round}`, events))
      if (plainRun.result !== events || consumerRun.result !== events) {
        return yield* new BenchError({
          message: `read ${plainRun.result} and consumed ${consumerRun.result} of ${events} messages`
        })
      }
      plainRuns.push(plainRun.seconds)
      consumerRuns.push(consumerRun.seconds)
    }
    const plainSeconds = Math.min(...plainRuns)
    const consumerSeconds = Math.min(...consumerRuns)
    const plainPerSec = events / plainSeconds
    const consumerPerSec = events / consumerSeconds
    const ratio = consumerPerSec / plainPerSec

    // The sender runs for the latency part only; a short warm-up opens the consumer's subscription first.
    const sender = yield* Effect.fork(OutboxSender.run())
    yield* latencies(`warmLatency${id}`, 50, rate)
    const measured = (yield* latencies(`latency${id}`, latencyEvents, rate)).sort((a, b) => a - b)
    yield* Fiber.interrupt(sender)
    const p50 = percentile(measured, 50)
    const p90 = percentile(measured, 90)
    const p99 = percentile(measured, 99)
    const max = measured[measured.length - 1] ?? Number.NaN

    process.stdout.write(
      `\nbench consumer: ${events} events over ${streams} streams, batches of ${batchSize}, ${target.description}` +
        ` (faster of two rounds)\n\n` +
        table([
          ["path", "events", "seconds", "events/s"],
          ["plain categoryGet loop", events, round(plainSeconds, 3), Math.round(plainPerSec)],
          ["Consumer.run (default mode)", events, round(consumerSeconds, 3), Math.round(consumerPerSec)]
        ]) +
        `\n\nratio ${round(ratio, 3)} (bar: ${ratioBar})\n\n` +
        `outbox to handler, ${latencyEvents} events at ${rate}/s through OutboxSender and pokes:\n\n` +
        table([
          ["percentile", "ms", "bar"],
          ["p50", round(p50, 1), `< ${p50Bar}`],
          ["p90", round(p90, 1), ""],
          ["p99", round(p99, 1), `< ${p99Bar}`],
          ["max", round(max, 1), ""]
        ]) +
        "\n\n"
    )
    const outcome: Outcome = {
      json: {
        bench: "consumer",
        ratio: round(ratio, 3),
        consumerPerSec: Math.round(consumerPerSec),
        plainPerSec: Math.round(plainPerSec),
        p50Ms: round(p50, 1),
        p99Ms: round(p99, 1)
      },
      ok: ratio >= ratioBar && p50 < p50Bar && p99 < p99Bar
    }
    return outcome
  }).pipe(
    Effect.provide(
      Layer.mergeAll(Outbox.layer(), PositionStore.layer, Idempotency.layer).pipe(
        Layer.provideMerge(EventoClient.layer({ url: target.url, token: target.token }))
      )
    )
  )

mainWithTarget(measure)
