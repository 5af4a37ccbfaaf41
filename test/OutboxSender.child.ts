/**
 * A sender in a process of its own, for the test that kills it with SIGKILL mid-batch: `OutboxSender.run` on
 * `DATABASE_URL`, sending to `EVENTODB_URL` with `EVENTODB_TOKEN`, until the process dies. Prints `started` once
 * its layers are built.
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as EventoClient from "../src/EventoClient.js"
import * as OutboxSender from "../src/OutboxSender.js"

const Live = Layer.mergeAll(
  PgClient.layerConfig({ url: Config.redacted("DATABASE_URL"), maxConnections: Config.succeed(4) }),
  EventoClient.layerConfig().pipe(Layer.provide(NodeHttpClient.layerUndici))
)

const program = Effect.gen(function*() {
  yield* Effect.sync(() => process.stdout.write("started\n"))
  return yield* OutboxSender.run({ pollInterval: "50 millis", concurrency: 4 })
}).pipe(Effect.provide(Live))

NodeRuntime.runMain(program)
