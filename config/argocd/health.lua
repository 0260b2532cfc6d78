-- Argo CD health check for apiconnector.dev/APIConnector.
-- Install as resource.customizations.health.apiconnector.dev_APIConnector in argocd-cm
-- (see argocd-cm-patch.yaml). The controller writes kstatus conditions: Ready, Reconciling, Stalled.
local hs = {}
if obj.status == nil or obj.status.observedGeneration == nil
    or obj.metadata.generation ~= obj.status.observedGeneration then
  hs.status = "Progressing"
  hs.message = "Waiting for the controller to observe the latest spec"
  return hs
end
local ready, reconciling, stalled
if obj.status.conditions ~= nil then
  for _, c in ipairs(obj.status.conditions) do
    if c.type == "Ready" then ready = c end
    if c.type == "Reconciling" then reconciling = c end
    if c.type == "Stalled" then stalled = c end
  end
end
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = stalled.reason .. ": " .. (stalled.message or "")
  return hs
end
if ready ~= nil and ready.status == "True" and ready.reason == "ScaledToZero" then
  hs.status = "Suspended"
  hs.message = ready.message or "Scaled to zero"
  return hs
end
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or "Ready"
  return hs
end
if reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = reconciling.message or "Reconciling"
  return hs
end
if ready ~= nil and ready.status == "False" then
  hs.status = "Degraded"
  hs.message = ready.reason .. ": " .. (ready.message or "")
  return hs
end
hs.status = "Progressing"
hs.message = "Waiting for the Ready condition"
return hs
