#!/usr/bin/env bash
# A CI/CD deploy step that records the deployment in trailseal with `trailseal emit`.
#
#   TRAILSEAL_URL=https://audit.internal SERVICE=checkout ENVIRONMENT=prod \
#   GIT_SHA=$(git rev-parse HEAD) PIPELINE_ID=$CI_PIPELINE_ID JOB_ATTEMPT=$CI_JOB_ATTEMPT \
#   DEPLOY_COMMAND='./deploy.sh' ./examples/ci_deploy_step.sh
#
# Each event has a fixed id (pipeline, job attempt, step) and a time taken once, so the retry loop
# below resends byte-identical events: the server answers a repeat with the original receipt, and
# each step is recorded exactly once. The receipts are kept as build artifacts: anyone with the
# verifier key can check them offline later with `trailseal verify-receipt`.
set -euo pipefail

: "${TRAILSEAL_URL:=http://127.0.0.1:8700}"
: "${SERVICE:=checkout}" "${ENVIRONMENT:=staging}" "${GIT_SHA:=unknown}" "${PIPELINE_ID:=local-1}"
: "${JOB_ATTEMPT:=1}" "${ACTOR:=ci-bot}" "${DEPLOY_COMMAND:=true}" "${ARTIFACTS:=./audit-receipts}"
TRAILSEAL=${TRAILSEAL:-trailseal}
export TRAILSEAL_URL
mkdir -p "$ARTIFACTS"

record() {  # record OUTCOME ACTION
  local when step="${2##*.}"
  when=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  for try in 1 2 3; do
    if $TRAILSEAL emit --id "deploy-${PIPELINE_ID}-${JOB_ATTEMPT}-${step}" --time "$when" \
        --actor "$ACTOR" --actor-type service --action "$2" --resource "service:${SERVICE}" \
        --outcome "$1" --environment "$ENVIRONMENT" --service ci \
        --meta "pipeline=${PIPELINE_ID}" --meta "git_sha=${GIT_SHA}" \
        --format json >"${ARTIFACTS}/${2}.json"; then
      return 0
    fi
    echo "trailseal emit failed (try $try); retrying" >&2
    sleep "$try"
  done
  return 1
}

record unknown deploy.rollout.start
if bash -c "$DEPLOY_COMMAND"; then
  record success deploy.rollout.finish
else
  status=$?
  record failure deploy.rollout.finish
  exit "$status"
fi
echo "deployment of ${SERVICE}@${GIT_SHA} recorded; receipts in ${ARTIFACTS}"
