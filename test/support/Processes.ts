/**
 * Separate OS processes for tests: a TypeScript program run with `node --import tsx`, its stdout and stderr
 * collected line by line, killed (SIGKILL) when the scope closes if it is still running.
 */
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import { spawn } from "node:child_process"
import { createInterface } from "node:readline"

export interface ExitStatus {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
}

export interface NodeProcess {
  readonly pid: number
  /** Every stdout line so far. */
  readonly stdout: Effect.Effect<ReadonlyArray<string>>
  /** Every stderr line so far (for failure messages). */
  readonly stderr: Effect.Effect<ReadonlyArray<string>>
  /** The first stdout line (seen so far or later) that matches, or a failure after `timeout`. */
  readonly waitForLine: (
    predicate: (line: string) => boolean,
    timeout?: Duration.DurationInput
  ) => Effect.Effect<string, Error>
  readonly kill: (signal?: NodeJS.Signals) => Effect.Effect<void>
  /** Waits until the process has exited. */
  readonly exited: Effect.Effect<ExitStatus>
}

export interface SpawnOptions {
  readonly args?: ReadonlyArray<string>
  readonly env?: Record<string, string>
}

/** Starts `script` (a path relative to the repository root) in a new Node process with tsx. */
export const spawnTs = (script: string, options: SpawnOptions = {}) =>
  Effect.acquireRelease(
    Effect.gen(function*() {
      const exit = yield* Deferred.make<ExitStatus>()
      const child = spawn(process.execPath, ["--import", "tsx", script, ...(options.args ?? [])], {
        cwd: process.cwd(),
        env: { ...process.env, ...options.env },
        stdio: ["ignore", "pipe", "pipe"]
      })
      const out: Array<string> = []
      const err: Array<string> = []
      createInterface({ input: child.stdout }).on("line", (line) => out.push(line))
      createInterface({ input: child.stderr }).on("line", (line) => err.push(line))
      child.once("exit", (code, signal) => Deferred.unsafeDone(exit, Exit.succeed({ code, signal })))
      child.once("error", () => Deferred.unsafeDone(exit, Exit.succeed({ code: null, signal: null })))
      if (child.pid === undefined) return yield* Effect.dieMessage(`could not start ${script}`)
      const pid = child.pid

      const find = (predicate: (line: string) => boolean) => Effect.sync(() => Option.fromNullable(out.find(predicate)))
      const self: NodeProcess = {
        pid,
        stdout: Effect.sync(() => [...out]),
        stderr: Effect.sync(() => [...err]),
        waitForLine: (predicate, timeout = Duration.seconds(15)) =>
          find(predicate).pipe(
            Effect.tap((found) => Option.isNone(found) ? Effect.sleep(Duration.millis(10)) : Effect.void),
            Effect.repeat({ until: Option.isSome }),
            Effect.map(Option.getOrThrow),
            Effect.timeoutFail({
              duration: timeout,
              onTimeout: () =>
                new Error(`${script} (pid ${pid}) printed no matching line; stderr:\n${err.slice(-30).join("\n")}`)
            })
          ),
        kill: (signal = "SIGTERM") => Effect.sync(() => void child.kill(signal)),
        exited: Deferred.await(exit)
      }
      return { self, child, exit }
    }),
    ({ child, exit }) =>
      Deferred.isDone(exit).pipe(
        Effect.flatMap((done) => done ? Effect.void : Effect.sync(() => void child.kill("SIGKILL"))),
        Effect.zipRight(Deferred.await(exit)),
        Effect.asVoid
      )
  ).pipe(Effect.map(({ self }) => self))
