/**
 * Chaos sender: `OutboxSender.layer` under `Singleton.layer`, as an application deploys it, on `DATABASE_URL`,
 * sending to `EVENTODB_URL`. Several may run at once; the one that wins the singleton prints `leader ...`. Runs until
 * SIGTERM (exit 0) or SIGKILL.
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as OutboxSender from "../../src/OutboxSender.js"
import { int, Kit, main, say } from "./child.js"

const program = Effect.gen(function*() {
  const options: OutboxSender.Options = {
    pollInterval: `${yield* int("CHAOS_POLL_MS", 200)} millis`,
    batchSize: yield* int("CHAOS_BATCH_SIZE", 50),
    concurrency: yield* int("CHAOS_CONCURRENCY", 4),
    backoff: { initial: "50 millis", max: `${yield* int("CHAOS_BACKOFF_MAX_MS", 1000)} millis` }
  }
  yield* Layer.build(OutboxSender.layer(options).pipe(Layer.provide(Kit("sender"))))
  yield* say("ready")
  return yield* Effect.never
}).pipe(Effect.scoped)

main(program)
