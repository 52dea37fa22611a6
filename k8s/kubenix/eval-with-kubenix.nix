# Evaluates the module as a real kubenix evaluation does (kubenix's k8s module with its generated
# Kubernetes schemas, nixpkgs' module system), where kubenix and nixpkgs are present: their paths
# come from the environment, since neither is part of this repository.
#   CAIRN_KUBENIX_SRC   a kubenix checkout (the directory with modules/k8s.nix)
#   CAIRN_NIXPKGS_LIB   nixpkgs' lib directory (or a nixpkgs checkout that has lib/)
# Usage, as scripts/k8s-check.py runs it:
#   nix-instantiate --eval --strict --json -E 'import k8s/kubenix/eval-with-kubenix.nix {
#     extra = { kubernetes.enableHashedNames = true; };   # another module of the evaluation
#     special = { cairn = { image = "…"; }; };            # specialArgs
#   }'
# The result is kubenix's `kubernetes.objects`: the objects as `make manifests` would write them.
{ module ? ./shared-subfolders-backup.nix, extra ? { }, special ? { }, version ? "1.36" }:
let
  need = var:
    let v = builtins.getEnv var; in
    if v == "" then throw "eval-with-kubenix.nix: set ${var} (see the comment at the top)" else /. + v;
  kubenixSrc = need "CAIRN_KUBENIX_SRC";
  libArg = need "CAIRN_NIXPKGS_LIB";
  libSrc = if builtins.pathExists (libArg + "/lib/default.nix") then libArg + "/lib" else libArg;
  lib0 = import libSrc;
  # kubenix's own helpers, as its flake adds them to lib.
  lib = lib0.extend (l: _: import (kubenixSrc + "/lib/upstreamables.nix") { lib = l; pkgs = { }; });
  kubenix = import (kubenixSrc + "/lib") { inherit lib; pkgs = { }; };
  evaluated = lib.evalModules {
    modules = [ (kubenixSrc + "/modules/k8s.nix") module extra { kubernetes.version = version; } ];
    specialArgs = { inherit kubenix; pkgs = { }; } // special;
  };
in
evaluated.config.kubernetes.objects
