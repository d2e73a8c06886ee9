#!/usr/bin/env python3
"""Mutation spot-check: remove one security check at a time from keybound-core or keybound-resource and confirm that
some test fails. Runs on a copy of the repository (the working tree is never touched) with its own
target directory. About 10 s per mutation once the copy is built. Not part of CI (it takes minutes);
run it after changing a verifier: scripts/mutation-spot-check.py
"""
import os, re, shutil, subprocess, sys, tempfile

# Each entry: (file, original, replacement, what) — each removes one check.
M = [
 ("keybound-core/dpop/verify.rs", "if !typ_matches(typ, PROOF_TYP) {", "if false {", "rule 4 typ"),
 ("keybound-core/dpop/verify.rs", 'if header.contains_key("crit") {', "if false {", "crit"),
 ("keybound-core/dpop/verify.rs", ".filter(|a| self.algorithms.contains(a))", ".filter(|_| true)", "rule 5 allow-list"),
 ("keybound-core/dpop/verify.rs", "jwk.check_algorithm(alg)\n            .map_err(|_| ProofError::AlgorithmKeyMismatch)?;", "let _ = jwk.check_algorithm(alg);", "rule 5 alg/key"),
 ("keybound-core/dpop/verify.rs", "if !jws.verify_with(&jwk, alg) {", "if false {", "rule 6 signature"),
 ("keybound-core/jwk.rs", "PRIVATE_MEMBERS.iter().find(|m| map.contains_key(**m))", "PRIVATE_MEMBERS.iter().find(|_| false)", "rule 7 private members"),
 ("keybound-core/dpop/verify.rs", "if htm.len() > MAX_HTM_LEN || htm != request.method {", "if htm.len() > MAX_HTM_LEN {", "rule 8 htm"),
 ("keybound-core/dpop/verify.rs", "if &claimed != request.htu {", "if false {", "rule 9 htu"),
 ("keybound-core/dpop/verify.rs", "if iat < request.now.saturating_sub(self.window.max_age) {", "if false {", "rule 11 iat past"),
 ("keybound-core/dpop/verify.rs", "if iat > request.now.saturating_add(self.window.future_leeway) {", "if false {", "rule 11 iat future"),
 ("keybound-core/dpop/verify.rs", "if jti.is_empty() || jti.len() > MAX_JTI_LEN {", "if jti.is_empty() {", "rule 11 jti length"),
 ("keybound-core/dpop/verify.rs", "if !AccessTokenHash::of(token).matches(ath) {", "if false {", "rule 12a ath"),
 ("keybound-core/dpop/verify.rs", "(NoncePolicy::Required(_), None) => return Err(ProofError::NonceRequired),", "(NoncePolicy::Required(_), None) => {}", "rule 10 nonce required"),
 ("keybound-core/dpop/verify.rs", "ring.check(n.as_str(), request.now)\n                    .map_err(|_| ProofError::NonceRejected)?;", "let _ = ring;", "rule 10 nonce valid"),
 ("keybound-core/binding.rs", "Some(key) if key == jkt => Ok(()),", "Some(_) => Ok(()),", "rule 12b jkt"),
 ("keybound-core/binding.rs", "(Self::Dpop(_), Scheme::Bearer) => Err(BindingError::DpopTokenAsBearer),", "(Self::Dpop(_), Scheme::Bearer) => Ok(()),", "downgrade to Bearer"),
 ("keybound-core/dpop/header.rs", "if values.next().is_some() {", "if false {", "rule 1 one header"),
 ("keybound-core/json.rs", "if map.contains_key(&key) {", "if false {", "duplicate members"),
 ("keybound-core/access_token.rs", "if !typ_matches(typ, ACCESS_TOKEN_TYP) {", "if false {", "AT typ"),
 ("keybound-core/access_token.rs", "if !claims.aud.contains(&self.audience) {", "if false {", "AT audience"),
 ("keybound-core/access_token.rs", "&& cnf.jkt.is_some() == cnf.x5t_s256.is_some()", "&& false", "AT both cnf"),
 ("keybound-core/jwk.rs", "if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {", "if false {", "weak RSA"),
 ("keybound-core/jwk.rs", "Some(len) if bytes.len() != len => Err(JwkError::NonCanonical(name)),", "Some(_) if false => Err(JwkError::NonCanonical(name)),", "EC coordinate length"),
 ("keybound-core/nonce.rs", "if step > now_step || now_step - step >= self.accepted_steps {", "if false {", "nonce expiry"),
]

# keybound-resource: each removes one check of the per-request pipeline.
M += [
 ("keybound-resource/verifier.rs", "if authorizations.next().is_some() || in_query {", "if false {", "RS one credential"),
 ("keybound-resource/verifier.rs", "if scheme == Scheme::Bearer && !dpop_lines.is_empty() {", "if false {", "RS Bearer with proof"),
 ("keybound-resource/verifier.rs", "if scheme == Scheme::DPoP && dpop_lines.is_empty() {", "if false {", "RS DPoP scheme needs a proof"),
 ("keybound-resource/verifier.rs", "            .check(&presented)\n", "            .check(&presented)\n            .or(Ok(()))\n", "RS binding"),
 ("keybound-resource/verifier.rs", "Ok(false) => return Err(self.proof_rejection(&ProofError::Replayed, now)),", "Ok(false) => {}", "RS replay"),
 ("keybound-resource/verifier.rs", "if !missing.is_empty() {", "if false {", "RS scopes"),
 ("keybound-resource/cache.rs", "if *until > now.as_secs() && claims.exp > now.as_secs()", "if true", "RS cache expiry"),
 ("keybound-resource/gateway.rs", "|| n.starts_with(CLAIM_HEADER_PREFIX)", "|| false", "gateway strips spoofed claim headers"),
]

def main():
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    work = tempfile.mkdtemp(prefix="keybound-mutants-")
    copy = os.path.join(work, "repo")
    shutil.copytree(repo, copy, ignore=shutil.ignore_patterns("target", ".git"))
    # copytree keeps mtimes; cargo would then trust artifacts built from an earlier mutant.
    for root, _, files in os.walk(copy):
        for name in files:
            os.utime(os.path.join(root, name))
    env = dict(os.environ, CARGO_TARGET_DIR=os.environ.get("MUTANTS_TARGET_DIR", "/var/cache/keybound-mut"))
    def cmd(crate):
        return ["cargo", "test", "-q", "-p", crate, "--tests", "--no-fail-fast"]
    for crate in sorted({f.split("/")[0] for f, *_ in M}):
        if subprocess.run(cmd(crate), cwd=copy, env=env, capture_output=True).returncode != 0:
            sys.exit(f"baseline test run of {crate} fails; fix that first")
    survived = 0
    for f, old, new, what in M:
        crate, file = f.split("/", 1)
        path = os.path.join(copy, "crates", crate, "src", file)
        text = open(path).read()
        if text.count(old) != 1:
            print(f"SKIP (pattern found {text.count(old)} times): {what}")
            survived += 1
            continue
        open(path, "w").write(text.replace(old, new))
        r = subprocess.run(cmd(crate), cwd=copy, env=env, capture_output=True, text=True)
        open(path, "w").write(text)
        lines = r.stdout.splitlines()
        failed = [l.strip() for l in lines if re.fullmatch(r"    [A-Za-z0-9_:]+", l)]
        if r.returncode == 0:
            print(f"SURVIVED: {what}")
            survived += 1
        elif "could not compile" in r.stderr:
            print(f"BUILD FAILED (fix the mutation): {what}")
            survived += 1
        else:
            print(f"killed: {what} by {sorted(set(failed))[:4]}")
    shutil.rmtree(work)
    print(f"{len(M) - survived} of {len(M)} mutations killed")
    sys.exit(1 if survived else 0)

if __name__ == "__main__":
    main()
