// Bake the gateway's compile cache into the image, so that a fresh container's first start is warm.
//
// Who runs it: the Dockerfile, as root, right after the gateway's npm install, in a build that has
// no network (scripts/build-image's second pass, `docker build --network none`); a derived image
// that installs another gateway can run it again the same way. It starts the gateway once, as the
// image's `node` user, exactly as the image runs it, waits until it answers and is ready, stops it
// (Node writes its compile cache on the way out) and keeps nothing of that start but the cache.
//
// Where the cache goes: the gateway's launcher enables Node's compile cache in-process under
// os.tmpdir()/node-compile-cache (no NODE_COMPILE_CACHE: with it set, the launcher re-spawns itself
// as a child, and the supervised pid would be a wrapper). /tmp/node-compile-cache is therefore a
// link to /var/cache/moltbot/node-compile-cache, which the image carries; the init makes the same
// link in a /tmp that is a fresh tmpfs (read-only root), where the cache is then read, not written.
// Node files it under the gateway's version and package.json's mtime and size, then its own tag
// (Node version, architecture, V8 flags, uid): any other gateway, Node or uid just misses it.

import { spawn } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import path from "node:path";

const CACHE = "/var/cache/moltbot/node-compile-cache";
const LINK = "/tmp/node-compile-cache";
const PORT = 18789;
const ANSWER_TIMEOUT_MS = 300_000; // a first start takes 15-70 s on two busy cores
const READY_TIMEOUT_MS = 60_000;
const QUIET_MS = 5_000;
const SETTLE_MS = 3_000; // modules the gateway imports just after "ready"
// Up: 2026.9 answers /healthz; 2026.1 has no probes, it says where it listens.
const LISTENING = /\[gateway\] listening on |http server listening/;
const EXIT_TIMEOUT_MS = 120_000; // writing the cache at exit takes seconds

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const say = (text) => process.stdout.write(`warm-compile-cache: ${text}\n`);

function refuseAnyNetwork() {
  // The gateway calls out once it is up (model catalog, plugin feed): it runs here only when the
  // kernel gives this step no interface but loopback.
  const interfaces = fs.readdirSync("/sys/class/net").filter((name) => name !== "lo");
  if (interfaces.length > 0) {
    say(`refused: this step has a network (${interfaces.join(", ")}); build it with --network none`);
    process.exit(1);
  }
}

function nodeUser() {
  const entry = fs
    .readFileSync("/etc/passwd", "utf8")
    .split("\n")
    .map((line) => line.split(":"))
    .find((fields) => fields[0] === "node");
  if (!entry) throw new Error("no `node` user in /etc/passwd");
  return { uid: Number(entry[2]), gid: Number(entry[3]) };
}

function scratch(user) {
  const root = fs.mkdtempSync("/tmp/warm-");
  const dirs = { root, state: `${root}/state`, home: `${root}/home`, workspace: `${root}/workspace` };
  for (const dir of Object.values(dirs)) {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    fs.chownSync(dir, user.uid, user.gid);
  }
  return dirs;
}

function startGateway(user, dirs) {
  // The environment the init gives openclaw (moltbot/profile.py), in scratch directories.
  const env = {
    ...process.env,
    HOME: dirs.home,
    USER: "node",
    LOGNAME: "node",
    OPENCLAW_STATE_DIR: dirs.state,
    OPENCLAW_WORKSPACE_DIR: dirs.workspace,
    OPENCLAW_GATEWAY_TOKEN: `warm-${process.pid}-${Date.now()}`,
    OPENCLAW_SUPERVISOR_MODE: "external",
    OPENCLAW_DISABLE_BONJOUR: "1",
    OPENCLAW_NO_AUTO_UPDATE: "1",
  };
  const args = ["/app/moltbot.mjs", "gateway", "--allow-unconfigured", "--bind", "lan"];
  const child = spawn("node", [...args, "--port", String(PORT)], {
    cwd: dirs.home,
    env,
    uid: user.uid,
    gid: user.gid,
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.output = [];
  child.exited = new Promise((resolve) => child.on("exit", (code, signal) => resolve({ code, signal })));
  for (const stream of [child.stdout, child.stderr]) {
    stream.setEncoding("utf8");
    stream.on("data", (text) => child.output.push(...text.split("\n").filter(Boolean)));
  }
  return child;
}

function answers() {
  // The Control UI answers every path with 200: only the probe's own JSON counts.
  return new Promise((resolve) => {
    const request = http.get({ host: "127.0.0.1", port: PORT, path: "/healthz", timeout: 2000 }, (response) => {
      let body = "";
      response.setEncoding("utf8");
      response.on("data", (chunk) => (body += chunk));
      response.on("end", () => {
        try {
          resolve(JSON.parse(body).ok === true);
        } catch {
          resolve(false);
        }
      });
    });
    request.on("timeout", () => request.destroy());
    request.on("error", () => resolve(false));
  });
}

async function settled(gateway) {
  // What the gateway imports once it is up: until it says it is ready (2026.9), or, for a
  // generation that never says so, until its output has been quiet for a few seconds.
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let lines = gateway.output.length;
  let quietSince = Date.now();
  while (Date.now() < deadline && !gateway.output.some((line) => line.includes("[gateway] ready"))) {
    if (gateway.output.length !== lines) [lines, quietSince] = [gateway.output.length, Date.now()];
    else if (Date.now() - quietSince >= QUIET_MS) break;
    await sleep(250);
  }
  await sleep(SETTLE_MS);
}

async function until(what, condition, child, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) break;
    if (await condition()) return;
    await sleep(250);
  }
  throw new Error(`the gateway did not ${what} (${child.output.slice(-30).join("\n")})`);
}

function summary(dir) {
  let files = 0;
  let bytes = 0;
  for (const entry of fs.readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (entry.isFile()) {
      files += 1;
      bytes += fs.statSync(path.join(entry.parentPath, entry.name)).size;
    }
  }
  return { files, bytes };
}

function openToOtherUsers(dir) {
  // Node adds a directory per uid (its tag) under the gateway's key: the directories above the
  // tags stay open to every uid (sticky, as /tmp), so that a gateway run under another uid keeps a
  // cache of its own instead of none.
  const entries = fs.readdirSync(dir, { withFileTypes: true });
  if (entries.some((entry) => entry.isFile())) return;
  fs.chmodSync(dir, 0o1777);
  for (const entry of entries) {
    if (entry.isDirectory()) openToOtherUsers(path.join(dir, entry.name));
  }
}

async function main() {
  refuseAnyNetwork();
  const manifest = JSON.parse(fs.readFileSync("/app/gateway.json", "utf8"));
  if (manifest.name !== "openclaw") {
    say(`nothing to bake: ${manifest.name} ${manifest.version} enables no compile cache`);
    return;
  }
  const user = nodeUser();
  fs.rmSync(LINK, { recursive: true, force: true });
  fs.rmSync(CACHE, { recursive: true, force: true });
  fs.mkdirSync(CACHE, { recursive: true });
  fs.chmodSync(CACHE, 0o1777);
  fs.symlinkSync(CACHE, LINK);
  const dirs = scratch(user);
  const started = Date.now();
  const gateway = startGateway(user, dirs);
  try {
    const up = async () => gateway.output.some((line) => LISTENING.test(line)) || (await answers());
    await until("come up", up, gateway, ANSWER_TIMEOUT_MS);
    const upAt = Date.now();
    await settled(gateway);
    gateway.kill("SIGTERM");
    const stopping = Date.now();
    const exit = await Promise.race([gateway.exited, sleep(EXIT_TIMEOUT_MS).then(() => null)]);
    if (exit === null) throw new Error("the gateway did not exit after SIGTERM");
    const { files, bytes } = summary(CACHE);
    if (files === 0) throw new Error("the gateway wrote no compile cache");
    openToOtherUsers(CACHE);
    say(
      `${manifest.name} ${manifest.version}, Node ${process.versions.node}, uid ${user.uid}: ` +
        `${files} files, ${(bytes / 1e6).toFixed(1)} MB in ${CACHE} ` +
        `(up in ${((upAt - started) / 1000).toFixed(1)} s, exited ${exit.code ?? exit.signal} ` +
        `${((Date.now() - stopping) / 1000).toFixed(1)} s after SIGTERM)`,
    );
  } catch (error) {
    gateway.kill("SIGKILL");
    fs.rmSync(LINK, { force: true });
    fs.rmSync(CACHE, { recursive: true, force: true });
    throw error;
  } finally {
    // Nothing of that start but the cache stays: its state, home, logs (/tmp/openclaw) and locks.
    for (const name of fs.readdirSync("/tmp")) {
      if (path.join("/tmp", name) !== LINK) fs.rmSync(path.join("/tmp", name), { recursive: true, force: true });
    }
  }
}

await main();
