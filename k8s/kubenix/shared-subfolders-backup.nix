# kubenix module for cairn: the nightly backup, the offsite copy to Proton Drive, retention with
# the deleting key, the restore drill and the one-time Proton bootstrap, and the two S3 Secrets
# (vals references into the homelab's SOPS file). It uses nothing from nixpkgs or kubenix's
# library, so `nix-instantiate --eval --strict --json` evaluates it alone; in a homelab
# repository it drops in as modules/kubenix/apps/shared-subfolders-backup.nix.
# k8s/*.yaml are rendered from it (k8s/render.py), and scripts/test.sh checks they are equal.
#
# Settings (docs/OPERATIONS.md, "Installing on the cluster", has the table) come from
#   - `import ./shared-subfolders-backup.nix { cairn = { … }; }`, or kubenix's
#     `specialArgs.cairn` (both arrive as the function's argument `cairn`), and
#   - `config._module.args.cairn = { … }` in any module of the same evaluation;
# both may be given: they are merged setting by setting, `_module.args` winning (`sopsKeys` is
# merged key by key). Every setting is checked: an unknown name or a value of the wrong kind
# stops the evaluation with one line naming it. Needs Kubernetes 1.27 or newer (CronJob
# `timeZone`).
{ ... }@args:
let
  inherit (builtins) all any attrNames concatStringsSep elem elemAt filter genList head
    isAttrs isBool isInt isList isString length match tail toJSON typeOf;

  name = "shared-subfolders-backup";

  # ---- Settings --------------------------------------------------------------------------------

  # The module system passes a module only the `_module.args` entries its function names, and a
  # named `cairn ? { }` would be looked up in `_module.args` (and fail) when nobody sets it: so
  # `_module.args.cairn` is read lazily from `config`.
  fromArgs = args.cairn or { };
  fromModuleArgs = args.config._module.args.cairn or { };
  kubenixNamespace = args.config.kubernetes.namespace or null;

  defaultSopsKeys = {
    nightlyAccessKeyId = "shared_subfolders_backup/nightly/aws_access_key_id";
    nightlySecretAccessKey = "shared_subfolders_backup/nightly/aws_secret_access_key";
    retentionAccessKeyId = "shared_subfolders_backup/retention/aws_access_key_id";
    retentionSecretAccessKey = "shared_subfolders_backup/retention/aws_secret_access_key";
  };

  # What a value is, for messages.
  kind = v: {
    int = "an integer";
    string = "a string";
    bool = "a boolean";
    list = "a list";
    set = "an attribute set";
    null = "null";
    lambda = "a function";
    path = "a path";
    float = "a floating-point number";
  }.${typeOf v} or (typeOf v);
  quoted = vs: concatStringsSep ", " (map toJSON vs);
  firstBad = ok: v: head (filter (i: !(ok (elemAt v i))) (genList (i: i) (length v)));
  # The first problem of a list, evaluating no further: a later check may assume earlier ones.
  firstProblem = ps:
    if length ps == 0 then null
    else if head ps != null then head ps
    else firstProblem (tail ps);

  # Types: `ok` says whether a value is one, `what` names it, `bad` says what a value is instead.
  t = rec {
    str = { what = "a string"; ok = isString; bad = kind; };
    int = { what = "an integer"; ok = isInt; bad = kind; };
    bool = { what = "a boolean (true or false)"; ok = isBool; bad = kind; };
    attrs = { what = "an attribute set"; ok = isAttrs; bad = kind; };
    nullOr = e: { what = "null or ${e.what}"; ok = v: v == null || e.ok v; bad = kind; };
    listOf = e: {
      what = "a list of ${e.plural}";
      ok = v: isList v && all e.ok v;
      bad = v: if !(isList v) then kind v else
        let i = firstBad e.ok v; in "a list whose item ${toString (i + 1)} is ${kind (elemAt v i)}";
    };
    enum = vs: {
      what = "one of ${quoted vs}";
      ok = v: isString v && elem v vs;
      bad = v: if isString v then toJSON v else kind v;
    };
    strs = str // { plural = "strings"; };
    ints = int // { plural = "integers"; };
  };

  # Every setting: its type and its default (`image` has none: it is required).
  spec = {
    namespace = { type = t.str; default = if kubenixNamespace != null then kubenixNamespace else "apps"; };
    image = { type = t.str; };
    imagePullSecrets = { type = t.listOf t.strs; default = [ ]; };
    imagePullPolicy = { type = t.enum [ "Always" "IfNotPresent" "Never" ]; default = "IfNotPresent"; };
    timeZone = { type = t.str; default = "Europe/Berlin"; };
    schedule = { type = t.str; default = "0 1 * * *"; };
    offsiteSchedule = { type = t.str; default = "0 5 * * *"; };
    retentionSchedule = { type = t.str; default = "30 4 * * *"; };
    # The homelab plan's MinIO, on a Raspberry Pi off the cluster (plain HTTP on the LAN).
    endpoint = { type = t.str; default = "http://10.10.10.209:9000"; };
    region = { type = t.str; default = "us-east-1"; };
    bucket = { type = t.str; default = "homelab-backup-shared-archives"; };
    storePrefix = { type = t.str; default = "store"; };
    exportsPrefix = { type = t.str; default = ""; };
    folders = { type = t.listOf t.strs; default = [ "notetaking" "images" "backup" ]; };
    # Folders of `folders` that may be absent; any other that cannot be read fails the night.
    optionalFolders = { type = t.listOf t.strs; default = [ ]; };
    shareClaim = { type = t.str; default = "cephfs-shared-storage-root"; };
    keepDaily = { type = t.int; default = 14; };
    secretsFrom = { type = t.enum [ "sops" "existing" ]; default = "sops"; };
    sopsFile = { type = t.str; default = "secrets/k8s-secrets.enc.yaml"; };
    sopsKeys = { type = t.attrs; default = defaultSopsKeys; };
    nightlySecret = { type = t.str; default = "${name}-s3-credentials"; };
    retentionSecret = { type = t.str; default = "${name}-retention-s3-credentials"; };
    stateStorageClass = { type = t.nullOr t.str; default = null; };
    sessionStorageClass = { type = t.nullOr t.str; default = null; };
    restoreStorageClass = { type = t.nullOr t.str; default = null; };
    stateSize = { type = t.str; default = "5Gi"; };
    sessionSize = { type = t.str; default = "64Mi"; };
    restoreSize = { type = t.str; default = "100Gi"; };
    # Sized from docs/BENCHMARKS.md: a full backup of 2.3 GB peaks at 119 MiB, a 1M-file one at
    # 398 MiB, the next-day export on S3 at 219 MiB; two cores are what the figures were taken on.
    resources = {
      type = t.attrs;
      default = {
        requests = { cpu = "500m"; memory = "256Mi"; };
        limits = { cpu = "2"; memory = "1Gi"; };
      };
    };
    backupDeadlineSeconds = { type = t.int; default = 6 * 3600; };
    offsiteDeadlineSeconds = { type = t.int; default = 5 * 3600; };
    retentionDeadlineSeconds = { type = t.int; default = 2 * 3600; };
    # The user the pods run as. The share must be readable by it: set runAsUser, or add the
    # share's group to supplementalGroups (an unreadable folder fails the night, exit 1; an
    # unreadable file is a warning, exit 3, a failed Job; the preflight init container names
    # either before the night starts).
    runAsUser = { type = t.int; default = 65532; };
    runAsGroup = { type = t.int; default = 65532; };
    fsGroup = { type = t.int; default = 65532; };
    supplementalGroups = { type = t.listOf t.ints; default = [ ]; };
    pushgateway = { type = t.nullOr t.str; default = "http://prometheus-pushgateway.monitoring.svc:9091"; };
    # The Proton client: Proton's official Drive CLI (the default), or rclone's protondrive backend.
    protonClient = { type = t.enum [ "proton-drive" "rclone" ]; default = "proton-drive"; };
    # null: "/my-files/Backups/homelab/shared-archives" (proton-drive) or
    # "protondrive:Backups/homelab/shared-archives" (rclone).
    protonRemote = { type = t.nullOr t.str; default = null; };
    # The bytes of the server the exports (and the store) live on, for the space alert; null: none.
    serverCapacityBytes = { type = t.nullOr t.int; default = null; };
    # The Proton plan's storage in bytes, for the quota alert; null: none.
    protonQuotaBytes = { type = t.nullOr t.int; default = null; };
    extraEnv = { type = t.listOf (t.attrs // { plural = "{ name = \"…\"; value = \"…\"; } sets"; }); default = [ ]; };
    networkPolicy = { type = t.bool; default = false; };
    # null: the endpoint's host with /32 when it is an IPv4 address.
    minioCidr = { type = t.nullOr t.str; default = null; };
    # null: the namespace in the Pushgateway's URL (`NAME.NAMESPACE.svc`), else "monitoring".
    pushgatewayNamespace = { type = t.nullOr t.str; default = null; };
    restoreDrillPath = { type = t.str; default = "notetaking"; };
  };
  known = attrNames spec;

  # The first problem, as one line, or null.
  sourceProblem = src: what:
    if !(isAttrs src) then "the settings ${what} must be an attribute set, not ${kind src}"
    else
      let unknown = filter (n: !(spec ? ${n})) (attrNames src); in
      if unknown == [ ] then null
      else
        let
          n = head unknown;
          prefix = a: b: builtins.substring 0 (builtins.stringLength a) b == a;
          near = filter (k: prefix n k || prefix k n) known;
        in
        "unknown setting ${toJSON n}${if near == [ ] then "" else " (did you mean ${toJSON (head near)}?)"} (known: ${concatStringsSep ", " known})";
  setting = n: "setting ${toJSON n}";
  typeProblem = n: v:
    let ty = spec.${n}.type; in
    if ty.ok v then null else "${setting n} must be ${ty.what}, not ${ty.bad v}";
  sopsKeysProblem = v:
    if !(isAttrs v) then null # the type check says it
    else
      let unknown = filter (k: !(defaultSopsKeys ? ${k})) (attrNames v);
          wrong = filter (k: !(isString v.${k}) || v.${k} == "") (attrNames v); in
      if unknown != [ ] then
        "unknown key ${toJSON (head unknown)} in ${setting "sopsKeys"} (known: ${concatStringsSep ", " (attrNames defaultSopsKeys)})"
      else if wrong != [ ] then
        "${setting "sopsKeys"} key ${toJSON (head wrong)} must be a non-empty string (a path in the SOPS file, e.g. ${toJSON defaultSopsKeys.${head wrong}}), not ${kind v.${head wrong}}"
      else null;
  reservedEnv = [ "CAIRN_CONFIG" "HOME" "RAYON_NUM_THREADS" "AWS_ACCESS_KEY_ID" "AWS_SECRET_ACCESS_KEY" ];
  extraEnvProblem = v:
    if !(isList v) then null
    else
      let
        item = i: e:
          let at = "${setting "extraEnv"} item ${toString (i + 1)}"; in
          if !(isAttrs e) then "${at} must be { name = \"…\"; value = \"…\"; }, not ${kind e}"
          else if filter (k: k != "name" && k != "value") (attrNames e) != [ ] then
            "${at} has an unknown key ${toJSON (head (filter (k: k != "name" && k != "value") (attrNames e)))} (known: name, value; Secrets go through the module's Secrets, not extraEnv)"
          else if !(e ? name) || !(e ? value) then "${at} needs both name and value"
          else if !(isString e.name) || e.name == "" then "${at} field \"name\" must be a non-empty string, not ${kind e.name}"
          else if !(isString e.value) then "${at} field \"value\" must be a string, not ${kind e.value}"
          else if elem e.name reservedEnv then "${at} sets ${e.name}, which the module sets itself"
          else null;
        found = filter (p: p != null) (genList (i: item i (elemAt v i)) (length v));
      in
      if found == [ ] then null else head found;
  resourcesProblem = v:
    if !(isAttrs v) then null
    else
      let
        unknown = filter (k: k != "requests" && k != "limits") (attrNames v);
        badSection = filter (k: !(isAttrs v.${k}) || any (q: !(isString v.${k}.${q} || isInt v.${k}.${q})) (attrNames v.${k})) (attrNames v);
      in
      if unknown != [ ] then "unknown key ${toJSON (head unknown)} in ${setting "resources"} (known: limits, requests)"
      else if badSection != [ ] then "${setting "resources"} key ${toJSON (head badSection)} must be an attribute set of quantities (strings such as \"500m\" or \"1Gi\")"
      else null;

  # The user's settings, `_module.args` over the function argument.
  given = fromArgs // fromModuleArgs;
  sopsKeysGiven = filter (v: v != null) [ (fromArgs.sopsKeys or null) (fromModuleArgs.sopsKeys or null) ];
  merged = builtins.mapAttrs (n: s:
    if n == "sopsKeys" then
      (if all isAttrs sopsKeysGiven then builtins.foldl' (a: b: a // b) defaultSopsKeys sopsKeysGiven
       else head (filter (v: !(isAttrs v)) sopsKeysGiven))
    else given.${n} or s.default or null) spec;

  # The endpoint, taken apart: scheme, host, port.
  endpointParts = if isString merged.endpoint then match "(https?)://([^/:]+|[[][0-9A-Fa-f:.]+[]])(:([0-9]+))?/?" merged.endpoint else null;
  endpointHost = elemAt endpointParts 1;
  endpointPort =
    let p = elemAt endpointParts 3; in
    if p != null then builtins.fromJSON p else if elemAt endpointParts 0 == "https" then 443 else 80;
  hostIsIPv4 = endpointParts != null
    && match "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}" endpointHost != null;
  minioCidr =
    if merged.minioCidr != null then merged.minioCidr
    else if hostIsIPv4 then "${endpointHost}/32" else null;

  checks =
    [
      (sourceProblem fromArgs "(cairn = { … })")
      (sourceProblem fromModuleArgs "in _module.args.cairn")
    ]
    ++ map (n: if given ? ${n} || n == "namespace" then typeProblem n merged.${n} else null) known
    ++ map sopsKeysProblem sopsKeysGiven
    ++ [
      (extraEnvProblem merged.extraEnv)
      (resourcesProblem merged.resources)
      (if !(given ? image) then
        "${setting "image"} is required and has no default: set it to the image built from k8s/Dockerfile (for example cairn.image = \"registry.lan/cairn:0.1.0\")"
      else if merged.image == "" then "${setting "image"} must not be empty: set it to the image built from k8s/Dockerfile"
      else null)
      (if endpointParts == null then
        "${setting "endpoint"} must be an http:// or https:// URL of the S3 server without a path, like \"http://10.10.10.209:9000\", not ${toJSON merged.endpoint}"
      else null)
      (if merged.networkPolicy && minioCidr == null then
        "${setting "minioCidr"} is required with networkPolicy = true: the endpoint's host ${toJSON endpointHost} is not an IPv4 address (give the MinIO server's address range, e.g. \"10.10.10.209/32\")"
      else if minioCidr != null && match "[0-9A-Fa-f:.]+/[0-9]{1,3}" minioCidr == null then
        "${setting "minioCidr"} must be an address range like \"10.10.10.209/32\", not ${toJSON minioCidr}"
      else null)
      # cairn refuses anything else at start (exit 2, nothing pushed): say it here instead.
      (if merged.pushgateway != null && match "http://[^@/?#]+(/[^@?#]*)?" merged.pushgateway == null then
        "${setting "pushgateway"} must be an http:// URL without credentials (cairn speaks only plain HTTP to an in-cluster Pushgateway; basic auth goes in metrics.pushgateway_user and a Secret)${if match ".*@.*" merged.pushgateway != null then " (the value is not repeated: it holds credentials)" else ", not ${toJSON merged.pushgateway}"}"
      else if merged.pushgatewayNamespace != null && pushgatewayUrlNamespace != null
        && merged.pushgatewayNamespace != pushgatewayUrlNamespace then
        "${setting "pushgatewayNamespace"} is ${toJSON merged.pushgatewayNamespace} but the pushgateway URL names the namespace ${toJSON pushgatewayUrlNamespace}"
      else null)
      (if merged.protonClient == "proton-drive"
          && (match "/[^/]+(/[^/]+)+/?" protonRemote == null || match "(.*/)?\\.{1,2}(/.*)?" protonRemote != null) then
        "${setting "protonRemote"} must be a Proton Drive folder below a section (no . or .. segments), like \"/my-files/Backups/homelab/shared-archives\", with protonClient = \"proton-drive\", not ${toJSON protonRemote}"
      else if merged.protonClient == "rclone" && match "[A-Za-z0-9_. -]+:.*" protonRemote == null then
        "${setting "protonRemote"} must be an rclone remote like \"protondrive:Backups/homelab/shared-archives\" with protonClient = \"rclone\", not ${toJSON protonRemote}"
      else null)
      (if merged.namespace == "" then "${setting "namespace"} must not be empty" else null)
      (if merged.folders == [ ] then "${setting "folders"} must name at least one folder of the share" else null)
      (let stray = filter (f: !(elem f merged.folders)) merged.optionalFolders; in
        if stray != [ ] then "${setting "optionalFolders"} names ${toJSON (head stray)}, which is not one of folders" else null)
      (if merged.keepDaily < 1 then "${setting "keepDaily"} must be at least 1, not ${toString merged.keepDaily}" else null)
    ]
    ++ map (n: if merged.${n} < 1 then "${setting n} must be a positive number of seconds, not ${toString merged.${n}}" else null)
      [ "backupDeadlineSeconds" "offsiteDeadlineSeconds" "retentionDeadlineSeconds" ];
  # `http://NAME.NAMESPACE.svc[.cluster.local][:PORT]`: the Pushgateway's namespace, if the URL says.
  pushgatewayUrlNamespace =
    let m = if merged.pushgateway == null then null
      else match "http://[^./:@]+\\.([^./:@]+)\\.svc(\\.cluster\\.local)?(:[0-9]+)?(/.*)?" merged.pushgateway;
    in if m == null then null else head m;
  pushgatewayNamespace =
    if merged.pushgatewayNamespace != null then merged.pushgatewayNamespace
    else if pushgatewayUrlNamespace != null then pushgatewayUrlNamespace
    else "monitoring";
  protonRemote =
    if merged.protonRemote != null then merged.protonRemote
    else if merged.protonClient == "rclone" then "protondrive:Backups/homelab/shared-archives"
    else "/my-files/Backups/homelab/shared-archives";
  error = firstProblem checks;
  # Every use of a setting goes through here: evaluating anything first runs the checks.
  settings = if error != null then throw "cairn: ${error}" else merged;

  # ---- Objects ----------------------------------------------------------------------------------

  inherit (settings) namespace image timeZone resources;
  labels = {
    "app.kubernetes.io/name" = "cairn";
    "app.kubernetes.io/part-of" = name;
  };
  # With kubenix's `kubernetes.enableHashedNames`, ConfigMaps and Secrets are renamed after a
  # hash of their data: references follow through kubenix's resolved resources.
  resolved = kind: n: args.config.kubernetes.resources.${kind}.${n}.metadata.name or n;
  securityContext = {
    runAsNonRoot = true;
    runAsUser = settings.runAsUser;
    runAsGroup = settings.runAsGroup;
    allowPrivilegeEscalation = false;
    readOnlyRootFilesystem = true;
    capabilities = { drop = [ "ALL" ]; };
    seccompProfile = { type = "RuntimeDefault"; };
  };
  podSecurity = {
    runAsNonRoot = true;
    fsGroup = settings.fsGroup;
    fsGroupChangePolicy = "OnRootMismatch";
    supplementalGroups = settings.supplementalGroups;
    seccompProfile = { type = "RuntimeDefault"; };
  };
  # The plan's Secrets: `…-s3-credentials` (the nightly key) and `…-retention-s3-credentials`
  # (the key that may delete), each with the keys AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
  nightly = settings.nightlySecret;
  retention = settings.retentionSecret;
  secretEnv = secret: [
    { name = "AWS_ACCESS_KEY_ID"; valueFrom.secretKeyRef = { name = resolved "secrets" secret; key = "AWS_ACCESS_KEY_ID"; }; }
    { name = "AWS_SECRET_ACCESS_KEY"; valueFrom.secretKeyRef = { name = resolved "secrets" secret; key = "AWS_SECRET_ACCESS_KEY"; }; }
  ];
  # vals (`make manifests`, or kubenix's own CLI) replaces each reference by the value at that
  # path of the SOPS file; the rendered Secret is then stored SOPS-encrypted under .k8s/.
  sopsRef = path:
    let p = if match "/.*" path != null then builtins.substring 1 (builtins.stringLength path) path else path; in
    "ref+sops://${settings.sopsFile}#/${p}";
  secret = sname: id: key: {
    apiVersion = "v1";
    kind = "Secret";
    type = "Opaque";
    metadata = { name = sname; inherit namespace labels; };
    # Empty but present: kubenix's hashed names read `data`; the values are in `stringData`,
    # since vals does not look into base64.
    data = { };
    stringData = {
      AWS_ACCESS_KEY_ID = sopsRef id;
      AWS_SECRET_ACCESS_KEY = sopsRef key;
    };
  };
  # Not `…-config`: the plan gives that name to its encrypted Secret manifest.
  configName = "${name}-cairn";
  # rayon's pool follows the CPU limit (the downward API rounds it up to whole cores).
  threads = {
    name = "RAYON_NUM_THREADS";
    valueFrom.resourceFieldRef = { resource = "limits.cpu"; divisor = "1"; };
  };
  configVolume = { name = "config"; configMap.name = resolved "configMaps" configName; };
  configMount = { name = "config"; mountPath = "/etc/cairn"; readOnly = true; };
  tmp = { name = "tmp"; emptyDir = { sizeLimit = "4Gi"; }; };
  tmpMount = { name = "tmp"; mountPath = "/tmp"; };
  sharedMount = { name = "shared"; mountPath = "/shared"; readOnly = true; };
  stateMount = { name = "state"; mountPath = "/state"; };
  sessionMount = { name = "session"; mountPath = "/session"; };
  container = { cname, args, env, mounts }: {
    name = cname;
    inherit image args resources securityContext;
    imagePullPolicy = settings.imagePullPolicy;
    command = [ "/usr/local/bin/cairn" ];
    # HOME on the writable /tmp: the root filesystem is read-only and uid 65532 has no home.
    env = [
      { name = "CAIRN_CONFIG"; value = "/etc/cairn/cairn.toml"; }
      { name = "HOME"; value = "/tmp"; }
      threads
    ] ++ env ++ settings.extraEnv;
    volumeMounts = [ configMount tmpMount ] ++ mounts;
  };
  # `cairn preflight`: every check of the command it guards, one line each, before the night
  # depends on them (exit 1 fails the Job in its first init container, the reason in its log).
  preflight = role: secret: mounts: container {
    cname = "preflight";
    args = [ "preflight" "--role" role ];
    env = secretEnv secret;
    inherit mounts;
  };
  cronJob = { jname, component, sched, deadline, pod, suspend ? false }:
    let jlabels = labels // { "app.kubernetes.io/component" = component; }; in {
      apiVersion = "batch/v1";
      kind = "CronJob";
      metadata = { name = jname; inherit namespace; labels = jlabels; };
      spec = {
        schedule = sched;
        inherit timeZone;
        concurrencyPolicy = "Forbid";
        inherit suspend;
        startingDeadlineSeconds = 3600;
        successfulJobsHistoryLimit = 3;
        failedJobsHistoryLimit = 3;
        jobTemplate.spec = {
          # No retry: every failure cairn reports is deterministic (a retry after a crash would
          # meet the dead pod's writer lease), and the alerts say it; the next night runs anew.
          backoffLimit = 0;
          activeDeadlineSeconds = deadline;
          template = {
            metadata.labels = jlabels;
            spec = pod // {
              restartPolicy = "Never";
              securityContext = podSecurity;
              # No pod talks to the Kubernetes API.
              automountServiceAccountToken = false;
            } // (if settings.imagePullSecrets == [ ] then { } else {
              imagePullSecrets = map (n: { name = n; }) settings.imagePullSecrets;
            });
          };
        };
      };
    };
  pvc = pname: size: storageClass: {
    apiVersion = "v1";
    kind = "PersistentVolumeClaim";
    metadata = { name = pname; inherit namespace labels; };
    spec = {
      accessModes = [ "ReadWriteOnce" ];
      resources.requests.storage = size;
    } // (if storageClass == null then { } else { storageClassName = storageClass; });
  };
  # Egress only where a job talks: DNS, MinIO, the Pushgateway, and for the Proton jobs 443.
  networkPolicy = { jname, component, minio ? true, proton ? false }: {
    apiVersion = "networking.k8s.io/v1";
    kind = "NetworkPolicy";
    metadata = { name = jname; inherit namespace labels; };
    spec = {
      podSelector.matchLabels = {
        "app.kubernetes.io/part-of" = name;
        "app.kubernetes.io/component" = component;
      };
      policyTypes = [ "Ingress" "Egress" ];
      ingress = [ ];
      egress = [
        {
          to = [ { namespaceSelector.matchLabels."kubernetes.io/metadata.name" = "kube-system"; } ];
          ports = [ { protocol = "UDP"; port = 53; } { protocol = "TCP"; port = 53; } ];
        }
      ]
      ++ (if minio then [ {
        to = [ { ipBlock.cidr = minioCidr; } ];
        ports = [ { protocol = "TCP"; port = endpointPort; } ];
      } ] else [ ])
      ++ (if minio && settings.pushgateway != null then [ {
        to = [ { namespaceSelector.matchLabels."kubernetes.io/metadata.name" = pushgatewayNamespace; } ];
        ports = [ { protocol = "TCP"; port = 9091; } ];
      } ] else [ ])
      ++ (if proton then [ { ports = [ { protocol = "TCP"; port = 443; } ]; } ] else [ ]);
    };
  };
  q = toJSON; # a TOML basic string is a JSON string
  config = ''
    timezone = ${q timeZone}

    [source]
    root = "/shared"
    folders = [${concatStringsSep ", " (map q settings.folders)}]
  '' + (if settings.optionalFolders == [ ] then "" else ''
    optional_folders = [${concatStringsSep ", " (map q settings.optionalFolders)}]
  '') + ''

    [store]
    kind = "s3"
    endpoint = ${q settings.endpoint}
    region = ${q settings.region}
    bucket = ${q settings.bucket}
    prefix = ${q settings.storePrefix}
    path_style = true

    [exports]
    kind = "s3"
    endpoint = ${q settings.endpoint}
    region = ${q settings.region}
    bucket = ${q settings.bucket}
    prefix = ${q settings.exportsPrefix}
    path_style = true
    keep_daily = 0
  '' + (if settings.serverCapacityBytes == null then "" else ''
    capacity_bytes = ${toString settings.serverCapacityBytes}
  '') + ''

    [state]
    dir = "/state"

    [retention]
    keep_daily = ${toString settings.keepDaily}

    [offsite]
    uploader = ${q settings.protonClient}
    remote = ${q protonRemote}
  '' + (if settings.protonClient == "rclone" then ''
    rclone_config = "/session/rclone.conf"
  '' else ''
    session_dir = "/session"
  '') + (if settings.protonQuotaBytes == null then "" else ''
    quota_bytes = ${toString settings.protonQuotaBytes}
  '') + ''
    scratch_dir = "/tmp/cairn-offsite"
  '' + (if settings.pushgateway == null then "" else ''

    [metrics]
    pushgateway = ${q settings.pushgateway}
  '');
in
{
  kubernetes.resources = {
    configMaps.${configName} = {
      apiVersion = "v1";
      kind = "ConfigMap";
      metadata = { name = configName; inherit namespace labels; };
      data."cairn.toml" = config;
    };
    secrets =
      if settings.secretsFrom == "sops" then {
        ${nightly} = secret nightly settings.sopsKeys.nightlyAccessKeyId settings.sopsKeys.nightlySecretAccessKey;
        ${retention} = secret retention settings.sopsKeys.retentionAccessKeyId settings.sopsKeys.retentionSecretAccessKey;
      } else { };
    persistentVolumeClaims = {
      "${name}-state" = pvc "${name}-state" settings.stateSize settings.stateStorageClass;
      "${name}-proton-session" = pvc "${name}-proton-session" settings.sessionSize settings.sessionStorageClass;
      # The restore drill's target: what the last drill restored stays there until the next.
      "${name}-restore" = pvc "${name}-restore" settings.restoreSize settings.restoreStorageClass;
    };
    cronJobs.${name} = cronJob {
      jname = name;
      component = "backup";
      sched = settings.schedule;
      deadline = settings.backupDeadlineSeconds;
      pod = {
        # Preflight first (the share readable, the bucket there, the key's rights, clock, space,
        # Pushgateway); then the repository is created on the first night (a no-op later).
        initContainers = [
          (preflight "nightly" nightly [ sharedMount stateMount ])
          (container {
            cname = "init";
            args = [ "init" "--exists-ok" ];
            env = secretEnv nightly;
            mounts = [ ];
          })
        ];
        containers = [
          (container {
            cname = "cairn";
            args = [ "run" ];
            env = secretEnv nightly;
            mounts = [ sharedMount stateMount ];
          })
        ];
        volumes = [
          configVolume
          tmp
          { name = "shared"; persistentVolumeClaim = { claimName = settings.shareClaim; readOnly = true; }; }
          { name = "state"; persistentVolumeClaim.claimName = "${name}-state"; }
        ];
      };
    };
    cronJobs."shared-subfolders-proton-sync" = cronJob {
      jname = "shared-subfolders-proton-sync";
      component = "offsite";
      sched = settings.offsiteSchedule;
      deadline = settings.offsiteDeadlineSeconds;
      pod = {
        initContainers = [ (preflight "offsite" nightly [ sessionMount ]) ];
        containers = [
          (container {
            cname = "cairn";
            args = [ "offsite" "sync" ];
            env = secretEnv nightly;
            mounts = [ sessionMount ];
          })
        ];
        volumes = [
          configVolume
          tmp
          { name = "session"; persistentVolumeClaim.claimName = "${name}-proton-session"; }
        ];
      };
    };
    # Retention with the key that may delete: the daily archives, then snapshots and packs.
    # Its own state (a scratch catalog rebuilt from the store), never the nightly volume.
    cronJobs."shared-subfolders-retention" = cronJob {
      jname = "shared-subfolders-retention";
      component = "retention";
      sched = settings.retentionSchedule;
      deadline = settings.retentionDeadlineSeconds;
      pod = {
        initContainers = [
          (preflight "retention" retention [ stateMount ])
          (container {
            cname = "exports-prune";
            args = [ "exports" "prune" "--keep" (toString settings.keepDaily) ];
            env = secretEnv retention;
            mounts = [ ];
          })
        ];
        containers = [
          (container {
            cname = "cairn";
            args = [ "prune" ];
            env = secretEnv retention;
            mounts = [ stateMount ];
          })
        ];
        volumes = [
          configVolume
          tmp
          { name = "state"; emptyDir = { sizeLimit = settings.stateSize; }; }
        ];
      };
    };
    # Templates, suspended: `kubectl create job --from=cronjob/NAME NAME-1` runs one.
    # The restore drill: one folder of the newest snapshot restored onto its own volume (each
    # drill overwrites the last one's files) and a tenth of the packs read back
    # (docs/OPERATIONS.md, "The restore drill", has the archive drill by hand).
    cronJobs."shared-subfolders-restore-drill" = cronJob {
      jname = "shared-subfolders-restore-drill";
      component = "restore-drill";
      sched = "0 3 1 * *";
      suspend = true;
      deadline = settings.backupDeadlineSeconds;
      pod = {
        initContainers = [
          (container {
            cname = "restore";
            args = [ "restore" "--path" settings.restoreDrillPath "--target" "/restore" "--overwrite" "always" "--verify" ];
            env = secretEnv nightly;
            mounts = [ stateMount { name = "restore"; mountPath = "/restore"; } ];
          })
        ];
        containers = [
          (container {
            cname = "check";
            args = [ "check" "--read-data-subset" "10%" ];
            env = secretEnv nightly;
            mounts = [ stateMount ];
          })
        ];
        volumes = [
          configVolume
          tmp
          { name = "state"; emptyDir = { sizeLimit = settings.stateSize; }; }
          { name = "restore"; persistentVolumeClaim.claimName = "${name}-restore"; }
        ];
      };
    };
    # The one-time Proton login: `cairn offsite login` prints the sign-in URL and keeps the
    # client's session on the session volume (proton-drive); with rclone, a pod that waits with
    # the volume mounted, for `kubectl exec -it job/NAME -- rclone config --config /session/rclone.conf`.
    cronJobs."shared-subfolders-proton-bootstrap" = cronJob {
      jname = "shared-subfolders-proton-bootstrap";
      component = "proton-bootstrap";
      sched = "0 0 1 1 *";
      suspend = true;
      deadline = 3600;
      pod = {
        containers = [
          (if settings.protonClient == "proton-drive" then
            # `cairn offsite login`: prints the sign-in URL (open it on any device), waits for
            # the sign-in, keeps only the client's session (0600) on the session volume.
            (container {
              cname = "login";
              args = [ "offsite" "login" ];
              env = [ ];
              mounts = [ sessionMount ];
            })
          else {
            # rclone: a pod that waits, for `kubectl exec -it … -- rclone config`.
            name = "login";
            inherit image resources securityContext;
            imagePullPolicy = settings.imagePullPolicy;
            command = [ "/bin/sleep" ];
            args = [ "3600" ];
            env = [ { name = "HOME"; value = "/tmp"; } ];
            volumeMounts = [ tmpMount sessionMount ];
          })
        ];
        volumes = [
          tmp
          configVolume
          { name = "session"; persistentVolumeClaim.claimName = "${name}-proton-session"; }
        ];
      };
    };
    networkPolicies =
      if settings.networkPolicy then {
        ${name} = networkPolicy { jname = name; component = "backup"; };
        "shared-subfolders-retention" = networkPolicy { jname = "shared-subfolders-retention"; component = "retention"; };
        "shared-subfolders-proton-sync" = networkPolicy { jname = "shared-subfolders-proton-sync"; component = "offsite"; proton = true; };
        "shared-subfolders-restore-drill" = networkPolicy { jname = "shared-subfolders-restore-drill"; component = "restore-drill"; };
        "shared-subfolders-proton-bootstrap" = networkPolicy { jname = "shared-subfolders-proton-bootstrap"; component = "proton-bootstrap"; minio = false; proton = true; };
      } else { };
  };
}
