# kubenix module for cairn: the nightly backup, the offsite copy to Proton Drive, retention with
# the deleting key, the restore drill and the one-time Proton bootstrap. It uses nothing from
# nixpkgs or kubenix's library, so `nix-instantiate --eval --strict --json` evaluates it alone;
# in a homelab repository it drops in as modules/kubenix/apps/shared-subfolders-backup.nix.
# k8s/*.yaml are rendered from it (k8s/render.py), and scripts/test.sh checks they are equal.
# As a kubenix module the module system passes its own arguments (config, lib, …); settings go
# in `cairn = { … }` beside them (or `import ./shared-subfolders-backup.nix { cairn = { … }; }`).
{ ... }@args:
let
  settings = {
    namespace = "apps";
    image = "ghcr.io/homelab/cairn:0.1.0";
    timeZone = "Europe/Berlin";
    schedule = "0 1 * * *";
    offsiteSchedule = "0 5 * * *";
    retentionSchedule = "30 4 * * *";
    # The homelab plan's MinIO, on a Raspberry Pi off the cluster (plain HTTP on the LAN).
    minioEndpoint = "http://10.10.10.209:9000";
    pushgateway = "http://prometheus-pushgateway.monitoring.svc:9091";
    # The user the pods run as. The share must be readable by it: set runAsUser, or add the
    # share's group to supplementalGroups (an unreadable file is a warning, exit 3, a failed Job).
    runAsUser = 65532;
    supplementalGroups = [ ];
  } // (args.cairn or { });
  inherit (settings) namespace image timeZone schedule offsiteSchedule retentionSchedule
    minioEndpoint pushgateway;
  name = "shared-subfolders-backup";
  labels = {
    "app.kubernetes.io/name" = "cairn";
    "app.kubernetes.io/part-of" = name;
  };
  # Sized from docs/BENCHMARKS.md: a full backup of 2.3 GB peaks at 119 MiB, a 1M-file one at
  # 398 MiB, the next-day export on S3 at 219 MiB; two cores are what the figures were taken on.
  resources = {
    requests = { cpu = "500m"; memory = "256Mi"; };
    limits = { cpu = "2"; memory = "1Gi"; };
  };
  securityContext = {
    runAsNonRoot = true;
    runAsUser = settings.runAsUser;
    runAsGroup = 65532;
    allowPrivilegeEscalation = false;
    readOnlyRootFilesystem = true;
    capabilities = { drop = [ "ALL" ]; };
    seccompProfile = { type = "RuntimeDefault"; };
  };
  podSecurity = {
    runAsNonRoot = true;
    fsGroup = 65532;
    fsGroupChangePolicy = "OnRootMismatch";
    supplementalGroups = settings.supplementalGroups;
    seccompProfile = { type = "RuntimeDefault"; };
  };
  # The plan's Secrets: `…-s3-credentials` (the nightly key) and `…-retention-s3-credentials`
  # (the key that may delete), each with the keys AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
  secretEnv = secret: [
    { name = "AWS_ACCESS_KEY_ID"; valueFrom.secretKeyRef = { name = secret; key = "AWS_ACCESS_KEY_ID"; }; }
    { name = "AWS_SECRET_ACCESS_KEY"; valueFrom.secretKeyRef = { name = secret; key = "AWS_SECRET_ACCESS_KEY"; }; }
  ];
  # Not `…-config`: the plan gives that name to its encrypted Secret manifest.
  configName = "${name}-cairn";
  # rayon's pool follows the CPU limit (the downward API rounds it up to whole cores).
  threads = {
    name = "RAYON_NUM_THREADS";
    valueFrom.resourceFieldRef = { resource = "limits.cpu"; divisor = "1"; };
  };
  configVolume = { name = "config"; configMap.name = configName; };
  configMount = { name = "config"; mountPath = "/etc/cairn"; readOnly = true; };
  tmp = { name = "tmp"; emptyDir = { sizeLimit = "4Gi"; }; };
  tmpMount = { name = "tmp"; mountPath = "/tmp"; };
  container = { cname, args, env, mounts }: {
    name = cname;
    inherit image args resources securityContext;
    command = [ "/usr/local/bin/cairn" ];
    # HOME on the writable /tmp: the root filesystem is read-only and uid 65532 has no home.
    env = [
      { name = "CAIRN_CONFIG"; value = "/etc/cairn/cairn.toml"; }
      { name = "HOME"; value = "/tmp"; }
      threads
    ] ++ env;
    volumeMounts = [ configMount tmpMount ] ++ mounts;
  };
  cronJob = { jname, sched, deadline, pod, suspend ? false }: {
    apiVersion = "batch/v1";
    kind = "CronJob";
    metadata = { name = jname; inherit namespace labels; };
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
          metadata.labels = labels;
          spec = pod // { restartPolicy = "Never"; securityContext = podSecurity; };
        };
      };
    };
  };
  pvc = pname: size: {
    apiVersion = "v1";
    kind = "PersistentVolumeClaim";
    metadata = { name = pname; inherit namespace labels; };
    spec = {
      accessModes = [ "ReadWriteOnce" ];
      resources.requests.storage = size;
    };
  };
  config = ''
    timezone = "${timeZone}"

    [source]
    root = "/shared"
    folders = ["notetaking", "images", "backup"]

    [store]
    kind = "s3"
    endpoint = "${minioEndpoint}"
    region = "us-east-1"
    bucket = "homelab-backup-shared-archives"
    prefix = "store"
    path_style = true

    [exports]
    kind = "s3"
    endpoint = "${minioEndpoint}"
    region = "us-east-1"
    bucket = "homelab-backup-shared-archives"
    prefix = ""
    path_style = true
    keep_daily = 0

    [state]
    dir = "/state"

    [retention]
    keep_daily = 14

    [offsite]
    uploader = "rclone"
    remote = "protondrive:Backups/homelab/shared-archives"
    rclone_config = "/session/rclone.conf"
    scratch_dir = "/tmp/cairn-offsite"

    [metrics]
    pushgateway = "${pushgateway}"
  '';
in
{
  kubernetes.resources = {
    configMaps.${configName} = {
      apiVersion = "v1";
      kind = "ConfigMap";
      metadata = { name = configName; inherit namespace labels; };
      data."cairn.toml" = config;
    };
    persistentVolumeClaims."${name}-state" = pvc "${name}-state" "5Gi";
    persistentVolumeClaims."${name}-proton-session" = pvc "${name}-proton-session" "64Mi";
    cronJobs.${name} = cronJob {
      jname = name;
      sched = schedule;
      deadline = 6 * 3600;
      pod = {
        # The repository is created on the first night (a no-op on every later one).
        initContainers = [
          (container {
            cname = "init";
            args = [ "init" "--exists-ok" ];
            env = secretEnv "${name}-s3-credentials";
            mounts = [ ];
          })
        ];
        containers = [
          (container {
            cname = "cairn";
            args = [ "run" ];
            env = secretEnv "${name}-s3-credentials";
            mounts = [
              { name = "shared"; mountPath = "/shared"; readOnly = true; }
              { name = "state"; mountPath = "/state"; }
            ];
          })
        ];
        volumes = [
          configVolume
          tmp
          { name = "shared"; persistentVolumeClaim = { claimName = "cephfs-shared-storage-root"; readOnly = true; }; }
          { name = "state"; persistentVolumeClaim.claimName = "${name}-state"; }
        ];
      };
    };
    cronJobs."shared-subfolders-proton-sync" = cronJob {
      jname = "shared-subfolders-proton-sync";
      sched = offsiteSchedule;
      deadline = 5 * 3600;
      pod = {
        containers = [
          (container {
            cname = "cairn";
            args = [ "offsite" "sync" ];
            env = secretEnv "${name}-s3-credentials";
            mounts = [ { name = "session"; mountPath = "/session"; } ];
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
      sched = retentionSchedule;
      deadline = 2 * 3600;
      pod = {
        initContainers = [
          (container {
            cname = "exports-prune";
            args = [ "exports" "prune" "--keep" "14" ];
            env = secretEnv "${name}-retention-s3-credentials";
            mounts = [ ];
          })
        ];
        containers = [
          (container {
            cname = "cairn";
            args = [ "prune" ];
            env = secretEnv "${name}-retention-s3-credentials";
            mounts = [ { name = "state"; mountPath = "/state"; } ];
          })
        ];
        volumes = [
          configVolume
          tmp
          { name = "state"; emptyDir = { sizeLimit = "4Gi"; }; }
        ];
      };
    };
    # Templates, suspended: `kubectl create job --from=cronjob/NAME NAME-1` runs one.
    # The restore drill: the newest snapshot restored into a scratch volume and a tenth of the
    # packs read back (docs/OPERATIONS.md, "The restore drill", has the archive drill by hand).
    cronJobs."shared-subfolders-restore-drill" = cronJob {
      jname = "shared-subfolders-restore-drill";
      sched = "0 3 1 * *";
      suspend = true;
      deadline = 6 * 3600;
      pod = {
        initContainers = [
          (container {
            cname = "restore";
            args = [ "restore" "--target" "/restore" "--verify" ];
            env = secretEnv "${name}-s3-credentials";
            mounts = [
              { name = "state"; mountPath = "/state"; }
              { name = "restore"; mountPath = "/restore"; }
            ];
          })
        ];
        containers = [
          (container {
            cname = "check";
            args = [ "check" "--read-data-subset" "10%" ];
            env = secretEnv "${name}-s3-credentials";
            mounts = [ { name = "state"; mountPath = "/state"; } ];
          })
        ];
        volumes = [
          configVolume
          tmp
          { name = "state"; emptyDir = { sizeLimit = "4Gi"; }; }
          { name = "restore"; emptyDir = { sizeLimit = "100Gi"; }; }
        ];
      };
    };
    # The one-time Proton login: a pod that waits with the session volume mounted, for
    # `kubectl exec -it job/NAME -- rclone config --config /session/rclone.conf`.
    cronJobs."shared-subfolders-proton-bootstrap" = cronJob {
      jname = "shared-subfolders-proton-bootstrap";
      sched = "0 0 1 1 *";
      suspend = true;
      deadline = 3600;
      pod = {
        containers = [
          {
            name = "login";
            inherit image resources securityContext;
            command = [ "/bin/sleep" ];
            args = [ "3600" ];
            env = [ { name = "HOME"; value = "/tmp"; } ];
            volumeMounts = [ tmpMount { name = "session"; mountPath = "/session"; } ];
          }
        ];
        volumes = [
          tmp
          { name = "session"; persistentVolumeClaim.claimName = "${name}-proton-session"; }
        ];
      };
    };
  };
}
