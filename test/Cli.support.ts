/**
 * Runs the built `eventodb-kit` bin as a child process. The bin comes from `tsc -p tsconfig.build.json`: `dist/`
 * when it is complete and newer than every source file (as after `npm test`'s build), else a build of this test
 * file's own into `node_modules/.cache` (inside the repository, so the bin resolves its dependencies), which other
 * test files building `dist/` at the same time cannot disturb.
 */
import { spawn, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"

const root = process.cwd()

const sourceFiles = (dir: string): Array<string> =>
  fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name)
    if (entry.isDirectory()) return sourceFiles(full)
    return entry.name.endsWith(".ts") && !entry.name.endsWith(".d.ts") ? [full] : []
  })

/** True when `outDir` holds a `.js` for every source file, none older than its source. */
const isFresh = (outDir: string): boolean =>
  sourceFiles(path.join(root, "src")).every((source) => {
    const built = path.join(outDir, path.relative(path.join(root, "src"), source)).replace(/\.ts$/, ".js")
    return fs.existsSync(built) && fs.statSync(built).mtimeMs >= fs.statSync(source).mtimeMs
  })

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * The path of a built `bin.js`. Another helper's half-edited file may break `tsc` for a moment: a failed build is
 * retried a few times before giving up with the compiler's output.
 */
export const buildBin = async (): Promise<{ readonly bin: string; readonly cleanup: () => void }> => {
  const dist = path.join(root, "dist")
  if (isFresh(dist)) return { bin: path.join(dist, "bin.js"), cleanup: () => {} }
  const outDir = path.join(root, "node_modules", ".cache", `eventodb-kit-cli-test-${process.pid}`)
  let output = ""
  for (let attempt = 1; attempt <= 4; attempt++) {
    const result = spawnSync(
      process.execPath,
      [path.join(root, "node_modules", "typescript", "bin", "tsc"), "-p", "tsconfig.build.json", "--outDir", outDir],
      { cwd: root, encoding: "utf8" }
    )
    if (result.status === 0) {
      return { bin: path.join(outDir, "bin.js"), cleanup: () => fs.rmSync(outDir, { recursive: true, force: true }) }
    }
    output = `${result.stdout}${result.stderr}`
    if (attempt < 4) await sleep(15_000)
  }
  fs.rmSync(outDir, { recursive: true, force: true })
  throw new Error(`npm run build failed:\n${output}`)
}

export interface Run {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

/**
 * Runs `node <bin> ...args` with only `env` (and PATH) in its environment, so nothing leaks in from the test run's
 * own variables; killed after 30 seconds.
 */
export const runBin = (bin: string, args: ReadonlyArray<string>, env: Record<string, string> = {}): Promise<Run> =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin, ...args], {
      cwd: root,
      env: { PATH: process.env.PATH ?? "", NO_COLOR: "1", ...env },
      stdio: ["ignore", "pipe", "pipe"]
    })
    let stdout = ""
    let stderr = ""
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk))
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk))
    const timer = setTimeout(() => child.kill("SIGKILL"), 30_000)
    child.once("error", (error) => {
      clearTimeout(timer)
      reject(error)
    })
    child.once("close", (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
  })

/** A stack trace line, which an operator should never see for an expected failure. */
export const stackLine = /^\s+at\s/m
