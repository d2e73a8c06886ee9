#!/usr/bin/env python3
"""Mutation spot-check: remove one security check at a time from keybound-core and confirm that
some test fails. Runs on a copy of the repository (the working tree is never touched) with its own
target directory. About 10 s per mutation once the copy is built. Not part of CI (it takes minutes);
run it after changing a verifier: scripts/mutation-spot-check.py
"""
import os, re, shutil, subprocess, sys, tempfile

# Each entry: (file, original, replacement, what) — each removes one check.
M = [
 ("dpop/verify.rs", "if !typ_matches(typ, PROOF_TYP) {", "if false {", "rule 4 typ"),
 ("dpop/verify.rs", 'if header.contains_key("crit") {', "if false {", "crit"),
 ("dpop/verify.rs", ".filter(|a| self.algorithms.contains(a))", ".filter(|_| true)", "rule 5 allow-list"),
 ("dpop/verify.rs", "jwk.check_algorithm(alg)\n            .map_err(|_| ProofError::AlgorithmKeyMismatch)?;", "let _ = jwk.check_algorithm(alg);", "rule 5 alg/key"),
 ("dpop/verify.rs", "if !jws.verify_with(&jwk, alg) {", "if false {", "rule 6 signature"),
 ("jwk.rs", "PRIVATE_MEMBERS.iter().find(|m| map.contains_key(**m))", "PRIVATE_MEMBERS.iter().find(|_| false)", "rule 7 private members"),
 ("dpop/verify.rs", "if htm.len() > MAX_HTM_LEN || htm != request.method {", "if htm.len() > MAX_HTM_LEN {", "rule 8 htm"),
 ("dpop/verify.rs", "if &claimed != request.htu {", "if false {", "rule 9 htu"),
 ("dpop/verify.rs", "if iat < request.now.saturating_sub(self.window.max_age) {", "if false {", "rule 11 iat past"),
 ("dpop/verify.rs", "if iat > request.now.saturating_add(self.window.future_leeway) {", "if false {", "rule 11 iat future"),
 ("dpop/verify.rs", "if jti.is_empty() || jti.len() > MAX_JTI_LEN {", "if jti.is_empty() {", "rule 11 jti length"),
 ("dpop/verify.rs", "if !AccessTokenHash::of(token).matches(ath) {", "if false {", "rule 12a ath"),
 ("dpop/verify.rs", "(NoncePolicy::Required(_), None) => return Err(ProofError::NonceRequired),", "(NoncePolicy::Required(_), None) => {}", "rule 10 nonce required"),
 ("dpop/verify.rs", "ring.check(n.as_str(), request.now)\n                    .map_err(|_| ProofError::NonceRejected)?;", "let _ = ring;", "rule 10 nonce valid"),
 ("binding.rs", "Some(key) if key == jkt => Ok(()),", "Some(_) => Ok(()),", "rule 12b jkt"),
 ("binding.rs", "(Self::Dpop(_), Scheme::Bearer) => Err(BindingError::DpopTokenAsBearer),", "(Self::Dpop(_), Scheme::Bearer) => Ok(()),", "downgrade to Bearer"),
 ("dpop/header.rs", "if values.next().is_some() {", "if false {", "rule 1 one header"),
 ("json.rs", "if map.contains_key(&key) {", "if false {", "duplicate members"),
 ("access_token.rs", "if !typ_matches(typ, ACCESS_TOKEN_TYP) {", "if false {", "AT typ"),
 ("access_token.rs", "if !claims.aud.contains(&self.audience) {", "if false {", "AT audience"),
 ("access_token.rs", "&& cnf.jkt.is_some() == cnf.x5t_s256.is_some()", "&& false", "AT both cnf"),
 ("jwk.rs", "if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {", "if false {", "weak RSA"),
 ("jwk.rs", "Some(len) if bytes.len() != len => Err(JwkError::NonCanonical(name)),", "Some(_) if false => Err(JwkError::NonCanonical(name)),", "EC coordinate length"),
 ("nonce.rs", "if step > now_step || now_step - step >= self.accepted_steps {", "if false {", "nonce expiry"),
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
    src = os.path.join(copy, "crates", "keybound-core", "src")
    cmd = ["cargo", "test", "-q", "-p", "keybound-core", "--tests", "--no-fail-fast"]
    if subprocess.run(cmd, cwd=copy, env=env, capture_output=True).returncode != 0:
        sys.exit("baseline test run fails; fix that first")
    survived = 0
    for f, old, new, what in M:
        path = os.path.join(src, f)
        text = open(path).read()
        if text.count(old) != 1:
            print(f"SKIP (pattern found {text.count(old)} times): {what}")
            survived += 1
            continue
        open(path, "w").write(text.replace(old, new))
        r = subprocess.run(cmd, cwd=copy, env=env, capture_output=True, text=True)
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
