/**
 * `npm run bench -- sender`: how close the outbox sender comes to a plain client.
 *
 * N messages over M streams (round-robin, as concurrent writers would leave them) are written to the outbox and
 * drained by `OutboxSender.drain`; the same messages (in streams of their own) are also sent by a plain loop over
 * `EventoClient.streamWrite` with the same concurrency, one fiber per stream at a time, each message with its own
 * id as the sender sends it. ratio = sender throughput / plain throughput over all rounds; the bar is 0.7. A
 * warm-up of both runs first so neither pays for JIT compilation and connection set-up alone, and the rounds
 * alternate which path goes first.
 *
 * Configuration: `BENCH_SENDER_EVENTS` (5000), `BENCH_SENDER_STREAMS` (100), `BENCH_SENDER_CONCURRENCY` (8),
 * `BENCH_SENDER_ROUNDS` (4), and `DATABASE_URL`, `EVENTODB_URL`, `EVENTODB_TOKEN`, `EVENTODB_ADMIN_TOKEN` as in bench/support.ts.
 */
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { randomUUID } from "node:crypto"
import * as EventoClient from "../src/EventoClient.js"
import * as Outbox from "../src/Outbox.js"
import * as OutboxSender from "../src/OutboxSender.js"
import { BenchError, type EventoTarget, mainWithTarget, type Outcome, round, runId, table } from "./support.js"

const threshold = 0.7

const round2 = (value: number) => round(value, 3)

interface Planned {
  readonly stream: string
  readonly message: EventoClient.NewMessage
}

/** `events` messages over `streams` streams of `category`, round-robin. */
const plan = (category: string, events: number, streams: number): ReadonlyArray<Planned> =>
  Array.from({ length: events }, (_, n) => ({
    stream: `${category}-${n % streams}`,
    message: {
      type: "AmountDeposited",
      data: { n, accountId: `acc-${n % streams}`, amount: (n % 97) * 10, currency: "EUR", note: "bench deposit" },
      metadata: { correlationId: `bench-${n}`, source: "bench/sender" }
    }
  }))

const byStream = (messages: ReadonlyArray<Planned>): ReadonlyArray<ReadonlyArray<Planned>> => {
  const groups = new Map<string, Array<Planned>>()
  for (const planned of messages) {
    const group = groups.get(planned.stream)
    if (group === undefined) groups.set(planned.stream, [planned])
    else group.push(planned)
  }
  return [...groups.values()]
}

/** The plain loop: streams in parallel up to `concurrency`, each stream's messages in order. */
const plain = (messages: ReadonlyArray<Planned>, concurrency: number) =>
  Effect.gen(function*() {
    const client = yield* EventoClient.EventoClient
    yield* Effect.forEach(
      byStream(messages),
      (group) =>
        Effect.forEach(group, ({ message, stream }) => client.streamWrite(stream, message, { id: randomUUID() }), {
          discard: true
        }),
      { concurrency, discard: true }
    )
  })

/** Fills the outbox (not timed), then drains it (timed). */
const writeOutbox = (messages: ReadonlyArray<Planned>) =>
  Effect.forEach(
    Array.from({ length: Math.ceil(messages.length / 500) }, (_, i) => messages.slice(i * 500, i * 500 + 500)),
    (chunk) => Outbox.writeBatch(chunk.map(({ message, stream }) => ({ stream, message }))),
    { discard: true }
  )

const timed = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const start = performance.now()
    const result = yield* effect
    return { result, seconds: (performance.now() - start) / 1000 }
  })

const measure = (target: EventoTarget) =>
  Effect.gen(function*() {
    const events = yield* Config.integer("BENCH_SENDER_EVENTS").pipe(Config.withDefault(5000))
    const streams = yield* Config.integer("BENCH_SENDER_STREAMS").pipe(Config.withDefault(100))
    const concurrency = yield* Config.integer("BENCH_SENDER_CONCURRENCY").pipe(Config.withDefault(8))
    const rounds = yield* Config.integer("BENCH_SENDER_ROUNDS").pipe(Config.withDefault(4))
    yield* Effect.logInfo("bench sender").pipe(
      Effect.annotateLogs({
        events,
        streams,
        concurrency,
        rounds,
        evento: target.description,
        namespace: target.namespace
      })
    )
    const id = runId()
    const options = { concurrency }

    // Warm-up: both paths, half the size, not measured (the JIT keeps speeding both up for thousands of messages).
    const warmup = Math.max(100, Math.floor(events / 2))
    yield* plain(plan(`warmPlain${id}`, warmup, streams), concurrency)
    yield* writeOutbox(plan(`warmOutbox${id}`, warmup, streams))
    yield* OutboxSender.drainWith(options)

    // Rounds alternate which path goes first (plain-sender, sender-plain, ...), so a machine that gets busier or
    // quieter during the run does not favour one path.
    const plainRuns: Array<number> = []
    const senderRuns: Array<number> = []
    for (let round = 0; round < rounds; round++) {
      const runPlain = Effect.map(
        timed(plain(plan(`plain${id}r${round}`, events, streams), concurrency)),
        ({ seconds }) => void plainRuns.push(seconds)
      )
      const runSender = Effect.gen(function*() {
        yield* writeOutbox(plan(`outbox${id}r${round}`, events, streams))
        const { result, seconds } = yield* timed(OutboxSender.drainWith(options))
        const backlog = yield* OutboxSender.backlog(target.namespace)
        if (result !== events || backlog.unsent !== 0) {
          return yield* new BenchError({
            message: `the sender delivered ${result} of ${events} rows; ${backlog.unsent} left unsent`
          })
        }
        senderRuns.push(seconds)
      })
      yield* round % 2 === 0 ? Effect.zipRight(runPlain, runSender) : Effect.zipRight(runSender, runPlain)
    }

    const sum = (xs: ReadonlyArray<number>) => xs.reduce((a, b) => a + b, 0)
    const plainPerSec = (events * rounds) / sum(plainRuns)
    const senderPerSec = (events * rounds) / sum(senderRuns)
    const ratio = senderPerSec / plainPerSec
    const perRound = plainRuns.map((seconds, round) => [
      `round ${round + 1} (${round % 2 === 0 ? "plain first" : "sender first"})`,
      Math.round(events / seconds),
      Math.round(events / senderRuns[round]!),
      round2(senderRuns[round]! === 0 ? 0 : (events / senderRuns[round]!) / (events / seconds))
    ])
    process.stdout.write(
      `\nbench sender: ${events} events over ${streams} streams, concurrency ${concurrency}, ${rounds} rounds, ` +
        `${target.description}\n\n` +
        table([
          ["", "plain events/s", "sender events/s", "ratio"],
          ...perRound,
          ["all rounds", Math.round(plainPerSec), Math.round(senderPerSec), round2(ratio)]
        ]) +
        `\n\nratio ${round2(ratio)} (bar: ${threshold})\n\n`
    )
    const outcome: Outcome = {
      json: {
        bench: "sender",
        ratio: round2(ratio),
        senderPerSec: Math.round(senderPerSec),
        plainPerSec: Math.round(plainPerSec),
        events,
        streams,
        concurrency
      },
      ok: ratio >= threshold
    }
    return outcome
  }).pipe(
    Effect.provide(
      Outbox.layer().pipe(
        Layer.provideMerge(EventoClient.layer({ url: target.url, token: target.token }))
      )
    )
  )

mainWithTarget(measure)
