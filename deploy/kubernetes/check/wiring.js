#!/usr/bin/env node
// Checks a rendered overlay against what strata-cloud really does, read from its source (not
// from a list kept here):
//
//   flags      every --flag in a strata-cloud container's args, every STRATA_* variable in its
//              env and every key of its config file is a flag of cloud-services/main.cpp
//              (strata::AddFlag) or --config (src/config.cpp); none set in env is shadowed by
//              the config file (precedence: command line, config file, environment); the
//              file is given as --config in args (STRATA_CONFIG works too, but one way is
//              checked: see below);
//   listening  --grpc-listen and --http-listen (args, config file, env, or main.cpp's
//              default) are not loopback, and the containerPorts named grpc and http are
//              their ports;
//   probes     every strata-cloud container has startup, liveness and readiness probes;
//              httpGet: its port (a number, or the name of a containerPort that exists) is the
//              HTTP port and its path one the REST gateway serves (rest_gateway.cpp); grpc: its
//              port is the gRPC port, main.cpp turns on gRPC's health service, and the service
//              name is one this pod's --services registers; the Prometheus annotations too;
//   database   STRATA_DATABASE is a postgresql:// URL without a password, not the base's
//              placeholder (*.invalid);
//   rules      a process with telemetry or edgehub and --cloud-rules runs the rule runner,
//              whose state is its own (rule_runner.h): at most one such Deployment, with
//              replicas 1, strategy Recreate and no HorizontalPodAutoscaler, and then no other
//              process serves telemetry or edgehub (its writes would not be evaluated);
//   references every Service's selector selects a workload and its targetPorts exist there;
//              every HPA's target and every PDB's selector exists.
//
//   node wiring.js --source REPO_ROOT FILE...    exit 0 when every file passes, 1 otherwise
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parse, parseAllDocuments } from "yaml";

// --- what the source says --------------------------------------------------------------------

function readSource(root) {
  const main = readFileSync(join(root, "cloud-services/main.cpp"), "utf8");
  const gateway = readFileSync(join(root, "cloud-services/gateway/rest_gateway.cpp"), "utf8");
  const config = readFileSync(join(root, "src/config.cpp"), "utf8");
  const need = (what, value) => {
    if (value === undefined || value === null || (value.size ?? value.length) === 0) {
      throw new Error(`cannot find ${what} in the source (the check needs updating)`);
    }
    return value;
  };

  // strata::AddFlag(app, "grpc-listen", flags.grpc_listen, ...) and the Flags struct's defaults.
  const fields = new Map();
  for (const m of main.matchAll(/^\s+(?:std::string|int|bool|std::u?int\d+_t) ([a-z_]+) = ("(?:[^"\\]|\\.)*"|[^;]+);/gm)) {
    fields.set(m[1], m[2].startsWith('"') ? JSON.parse(m[2]) : m[2]);
  }
  const flags = new Map();  // name -> default (undefined: none)
  for (const m of main.matchAll(/AddFlag\(app, "([a-z0-9-]+)", flags\.([a-z_]+)/g)) flags.set(m[1], fields.get(m[2]));
  need("strata::AddFlag flags", flags);
  need("the --config option", config.match(/set_config\("--config"/));
  flags.set("config", undefined);

  // kServices: {"registry", "strata.v1.DeviceRegistry"}, ...
  const services = new Map();
  for (const m of main.matchAll(/\{"([a-z]+)", "(strata\.v1\.[A-Za-z]+)"\}/g)) services.set(m[1], m[2]);
  need("kServices", services);

  // The services whose presence starts the rule runner: run_rules = flags.cloud_rules && (...).
  const runRules = need("run_rules", main.match(/run_rules = flags\.cloud_rules && \(([^;]+)\);/));
  const ruleServices = new Set([...runRules[1].matchAll(/services\.count\("([a-z]+)"\)/g)].map((m) => m[1]));
  need("the services of run_rules", ruleServices);

  // if (path == "/healthz" || ...) in the gateway's fixed routes.
  const paths = new Set([...gateway.matchAll(/path == "(\/[A-Za-z0-9._\/-]*)"/g)].map((m) => m[1]));
  need("the gateway's fixed paths", paths);

  return {
    flags,
    services,
    ruleServices,
    paths,
    grpcHealth: /grpc::EnableDefaultHealthCheckService\(true\)/.test(main),
    healthPerService: /SetServingStatus\(name, true\)/.test(main),
  };
}

const envName = (flag) => "STRATA_" + flag.toUpperCase().replaceAll("-", "_");

// --- the rendered objects ----------------------------------------------------------------------

const workloadKinds = new Set(["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"]);
const isStrataCloud = (c) => /(^|\/)strata-cloud([:@]|$)/.test(c.image ?? "");
const loopback = (host) => /^(127\.|localhost$|::1$|\[::1\]$)/.test(host);
const falsy = (v) => /^(false|0|off|no)$/i.test(String(v).trim());

function hostPort(s) {
  const colon = s.lastIndexOf(":");
  const port = Number(s.slice(colon + 1));
  if (colon < 0 || !Number.isInteger(port) || port < 1 || port > 65535) return null;
  return { host: s.slice(0, colon), port };
}

function matches(selector, labels) {
  return Object.entries(selector ?? {}).every(([k, v]) => labels?.[k] === v);
}

function checkFile(file, src) {
  const objects = parseAllDocuments(readFileSync(file, "utf8")).map((d) => d.toJS()).filter(Boolean);
  const errors = [];
  const byKind = (kind) => objects.filter((o) => o.kind === kind);
  const configMaps = new Map(byKind("ConfigMap").map((o) => [o.metadata.name, o.data ?? {}]));
  const workloads = objects.filter((o) => workloadKinds.has(o.kind));
  const hpaTargets = new Set(byKind("HorizontalPodAutoscaler").map((h) => `${h.spec.scaleTargetRef.kind}/${h.spec.scaleTargetRef.name}`));
  let probes = 0;
  const ruleRunners = [];
  const ingestServers = [];

  for (const w of workloads) {
    const pod = w.spec.template?.spec ?? {};
    const volumes = new Map((pod.volumes ?? []).map((v) => [v.name, v]));
    for (const c of pod.containers ?? []) {
      if (!isStrataCloud(c)) continue;
      const where = `${w.kind}/${w.metadata.name} container ${c.name}`;
      const fail = (msg) => errors.push(`${where}: ${msg}`);

      // Flags from the command line, the environment and the config file.
      const args = new Map();
      const list = c.args ?? [];
      for (let i = 0; i < list.length; i++) {
        const m = String(list[i]).match(/^--([a-z0-9-]+)(?:=(.*))?$/s);
        if (!m) {
          fail(`argument ${JSON.stringify(list[i])} is not --flag[=value]`);
          continue;
        }
        let value = m[2];
        if (value === undefined) {
          value = list[i + 1] !== undefined && !String(list[i + 1]).startsWith("--") ? String(list[++i]) : "true";
        }
        if (!src.flags.has(m[1])) fail(`--${m[1]} is not a strata-cloud flag`);
        args.set(m[1], value);
      }
      if (c.command) fail("sets command: the image's entrypoint is strata-cloud; give flags as args");
      const env = new Map();
      for (const e of c.env ?? []) {
        if (!e.name.startsWith("STRATA_")) continue;
        if (e.name === "STRATA_CONFIG") {
          // strata-cloud reads it (src/config.cpp), but the check follows --config in args
          // only: one way of naming the file, so the file's keys are checked.
          fail("env STRATA_CONFIG: name the config file with --config in args (what this check follows)");
          continue;
        }
        const flag = [...src.flags.keys()].find((f) => envName(f) === e.name);
        if (!flag) {
          fail(`env ${e.name} is no strata-cloud flag's variable`);
          continue;
        }
        let value = e.value;
        const ref = e.valueFrom?.configMapKeyRef;
        if (ref) {
          value = configMaps.get(ref.name)?.[ref.key];
          if (value === undefined && !ref.optional) fail(`env ${e.name}: ConfigMap ${ref.name} has no key ${ref.key}`);
        } else if (e.valueFrom?.secretKeyRef) {
          value = `<Secret ${e.valueFrom.secretKeyRef.name}/${e.valueFrom.secretKeyRef.key}>`;
        }
        env.set(flag, value);
      }
      for (const e of c.envFrom ?? []) fail(`envFrom (${JSON.stringify(e)}) is not checked: list the variables in env`);

      // The config file: --config or STRATA_CONFIG, a file of a mounted ConfigMap.
      let fileFlags = new Map();
      const configPath = args.get("config");
      if (configPath !== undefined) {
        const mount = (c.volumeMounts ?? []).find((m) => configPath.startsWith(m.mountPath.replace(/\/?$/, "/")));
        const volume = mount && volumes.get(mount.name);
        if (!volume?.configMap) {
          fail(`config file ${configPath} is not in a mounted ConfigMap`);
        } else {
          const rel = configPath.slice(mount.mountPath.replace(/\/?$/, "/").length);
          const item = (volume.configMap.items ?? []).find((i) => i.path === rel);
          const key = volume.configMap.items ? item?.key : rel;
          const text = configMaps.get(volume.configMap.name)?.[key];
          if (text === undefined) {
            fail(`config file ${configPath}: ConfigMap ${volume.configMap.name} has no such key`);
          } else {
            const parsed = parse(text) ?? {};
            fileFlags = new Map(Object.entries(parsed).map(([k, v]) => [k, String(v)]));
            for (const k of fileFlags.keys()) {
              if (!src.flags.has(k)) fail(`config file key ${k} is not a strata-cloud flag`);
              if (env.has(k) && !args.has(k)) fail(`config file key ${k} shadows env ${envName(k)} (the file comes first)`);
            }
          }
        }
      }
      const flag = (name) => args.get(name) ?? fileFlags.get(name) ?? env.get(name) ?? src.flags.get(name);

      // --services.
      const servicesFlag = flag("services") ?? "all";
      const services = servicesFlag === "all" ? [...src.services.keys()] : servicesFlag.split(",").filter(Boolean);
      for (const s of services) if (!src.services.has(s)) fail(`--services names ${s}, which strata-cloud does not know`);
      const grpcNames = new Set(services.map((s) => src.services.get(s)).filter(Boolean));
      if (services.some((s) => src.ruleServices.has(s))) {
        ingestServers.push(where);
        if (!falsy(flag("cloud-rules"))) ruleRunners.push({ w, where });
      }

      // The listening addresses and the container ports.
      const listen = {};
      for (const [name, portName] of [["grpc-listen", "grpc"], ["http-listen", "http"]]) {
        const value = flag(name);
        const hp = value === undefined ? null : hostPort(value);
        if (!hp) {
          fail(`--${name} ${JSON.stringify(value)} is not HOST:PORT`);
          continue;
        }
        if (loopback(hp.host)) fail(`--${name}=${value} listens on loopback: the kubelet and Services cannot reach it`);
        listen[portName] = hp.port;
        const declared = (c.ports ?? []).find((p) => p.name === portName);
        if (!declared) fail(`no containerPort named ${portName} (--${name} port ${hp.port})`);
        else if (declared.containerPort !== hp.port) fail(`containerPort ${portName} is ${declared.containerPort}, --${name} listens on ${hp.port}`);
      }
      for (const p of c.ports ?? []) {
        if (!Object.values(listen).includes(p.containerPort)) fail(`containerPort ${p.name ?? ""} ${p.containerPort}: strata-cloud does not listen there`);
      }
      const portOf = (port) => {
        if (typeof port === "number") return port;
        const named = (c.ports ?? []).find((p) => p.name === port);
        return named ? named.containerPort : undefined;
      };

      // The probes.
      for (const kind of ["startupProbe", "livenessProbe", "readinessProbe"]) {
        const probe = c[kind];
        if (!probe) {
          fail(`no ${kind}`);
          continue;
        }
        probes++;
        if (probe.httpGet) {
          const port = portOf(probe.httpGet.port);
          if (port === undefined) fail(`${kind}: httpGet port ${probe.httpGet.port} is not a containerPort name`);
          else if (port !== listen.http) fail(`${kind}: httpGet port ${probe.httpGet.port} (${port}) is not the REST port ${listen.http}`);
          const path = (probe.httpGet.path ?? "/").split("?")[0];
          if (!src.paths.has(path)) fail(`${kind}: strata-cloud does not serve ${path} (it serves ${[...src.paths].join(" ")})`);
          if (probe.httpGet.scheme && probe.httpGet.scheme !== "HTTP") fail(`${kind}: scheme ${probe.httpGet.scheme}: the REST port is plain HTTP`);
        } else if (probe.grpc) {
          if (!src.grpcHealth) fail(`${kind}: grpc probe, but main.cpp does not enable gRPC's health service`);
          if (probe.grpc.port !== listen.grpc) fail(`${kind}: grpc port ${probe.grpc.port} is not the gRPC port ${listen.grpc}`);
          const service = probe.grpc.service ?? "";
          if (service !== "" && !(src.healthPerService && grpcNames.has(service))) {
            fail(`${kind}: grpc service ${service} is not one this pod serves (${[...grpcNames].join(", ")})`);
          }
        } else if (probe.tcpSocket) {
          const port = portOf(probe.tcpSocket.port);
          if (!Object.values(listen).includes(port)) fail(`${kind}: tcpSocket port ${probe.tcpSocket.port} is not one strata-cloud listens on`);
        } else {
          fail(`${kind}: neither httpGet, grpc nor tcpSocket (the image has no shell for exec)`);
        }
      }
      const annotations = w.spec.template.metadata?.annotations ?? {};
      if (annotations["prometheus.io/port"] !== undefined && Number(annotations["prometheus.io/port"]) !== listen.http) {
        fail(`annotation prometheus.io/port ${annotations["prometheus.io/port"]} is not the REST port ${listen.http}`);
      }
      if (annotations["prometheus.io/path"] !== undefined && !src.paths.has(annotations["prometheus.io/path"])) {
        fail(`annotation prometheus.io/path ${annotations["prometheus.io/path"]} is not served`);
      }

      // The database.
      const database = flag("database");
      if (database?.startsWith("<Secret ")) {
        // A URL kept whole in a Secret: not readable here.
      } else if (!database || !/^postgres(ql)?:\/\//.test(database)) {
        fail(`--database ${JSON.stringify(database)}: Kubernetes pods need a shared postgresql:// database`);
      } else {
        if (/\.invalid[:/]/.test(database)) fail(`--database ${database}: the base's placeholder; the overlay must set database-url`);
        if (/^postgres(ql)?:\/\/[^/@]*:[^/@]*@/.test(database)) fail("--database carries a password: keep it in a Secret (PGPASSWORD)");
      }
    }
  }

  // The rule runner's state lives in its process: one of it, alone with the telemetry writes.
  if (ruleRunners.length > 1) errors.push(`${ruleRunners.length} processes run the CLOUD rule runner (${ruleRunners.map((r) => r.where).join("; ")}): one at most`);
  for (const { w, where } of ruleRunners) {
    if (w.kind !== "Deployment" || w.spec.replicas !== 1) errors.push(`${where}: runs the rule runner: must be a Deployment with replicas: 1`);
    if (w.spec.strategy?.type !== "Recreate") errors.push(`${where}: runs the rule runner: strategy must be Recreate (old and new would run side by side)`);
    if (hpaTargets.has(`Deployment/${w.metadata.name}`)) errors.push(`${where}: runs the rule runner: no HorizontalPodAutoscaler may scale it`);
  }
  if (ruleRunners.length === 1 && ingestServers.length > 1) {
    errors.push(`telemetry or edgehub is served by ${ingestServers.join("; ")}: the rule runner would not see the others' writes`);
  }

  // References between objects.
  for (const s of byKind("Service")) {
    const selected = workloads.filter((w) => s.spec.selector && matches(s.spec.selector, w.spec.template?.metadata?.labels));
    if (selected.length === 0) errors.push(`Service/${s.metadata.name}: its selector selects no workload`);
    for (const w of selected) {
      const ports = (w.spec.template.spec.containers ?? []).flatMap((c) => c.ports ?? []);
      for (const p of s.spec.ports ?? []) {
        const target = p.targetPort ?? p.port;
        const ok = typeof target === "number" ? ports.some((q) => q.containerPort === target) : ports.some((q) => q.name === target);
        if (!ok) errors.push(`Service/${s.metadata.name} port ${p.name}: targetPort ${target} is no port of ${w.kind}/${w.metadata.name}`);
      }
    }
  }
  for (const h of byKind("HorizontalPodAutoscaler")) {
    const t = h.spec.scaleTargetRef;
    if (!workloads.some((w) => w.kind === t.kind && w.metadata.name === t.name)) errors.push(`HorizontalPodAutoscaler/${h.metadata.name}: no ${t.kind}/${t.name}`);
    if (!workloads.some((w) => w.kind === t.kind && w.metadata.name === t.name && (w.spec.template.spec.containers ?? []).every((c) => c.resources?.requests?.cpu))) {
      errors.push(`HorizontalPodAutoscaler/${h.metadata.name}: its target's containers need cpu requests`);
    }
  }
  for (const p of byKind("PodDisruptionBudget")) {
    if (!workloads.some((w) => matches(p.spec.selector?.matchLabels, w.spec.template?.metadata?.labels))) {
      errors.push(`PodDisruptionBudget/${p.metadata.name}: its selector selects no workload`);
    }
  }

  const cloud = workloads.filter((w) => (w.spec.template?.spec?.containers ?? []).some(isStrataCloud));
  if (cloud.length === 0) errors.push("no strata-cloud workload");
  for (const e of errors) console.error(`${file}: ${e}`);
  console.log(`wiring: ${file}: ${cloud.length} strata-cloud workloads, ${probes} probes, ` +
              `${ruleRunners.length} rule runner; ${errors.length === 0 ? "ok" : `${errors.length} problem(s)`}`);
  return errors.length;
}

function main(argv) {
  const i = argv.indexOf("--source");
  if (i < 0 || !argv[i + 1] || argv.length < 3) {
    console.error("usage: node wiring.js --source REPO_ROOT FILE...");
    return 2;
  }
  const src = readSource(argv[i + 1]);
  console.log(`wiring: strata-cloud serves ${[...src.paths].join(" ")} over HTTP; gRPC health ${src.grpcHealth ? "on" : "OFF"}; ` +
              `${src.flags.size} flags; rule runner with ${[...src.ruleServices].join(" or ")}`);
  const files = argv.filter((_, j) => j !== i && j !== i + 1);
  let problems = 0;
  for (const f of files) problems += checkFile(f, src);
  return problems > 0 ? 1 : 0;
}

process.exitCode = main(process.argv.slice(2));
