// Tenant isolation authorizer for wasmgate (world `authorizer-plugin` of
// wit/policy.wit), built with componentize-js (`jco componentize`).
//
// Rules, in order:
//  1. A method classified `unauthenticated` is allowed.
//  2. A sandbox-secret caller is allowed on `sandbox-secret` and `dual-auth`
//     methods only (the gateway already checked the secret).
//  3. Without a principal: deny.
//  4. A principal with the admin role may call anything, in any tenant.
//  5. If `allowed-methods` is set, other principals may only call methods it
//     matches.
//  6. Every scope the classifier requires must be held (verbatim, or the
//     wildcard scope).
//  7. If the call names a tenant (path `/tenants/<t>/...` anywhere in the
//     path, or an authority `<t>.<tenant-domain>`), the principal must belong
//     to that tenant.
//  8. Otherwise: allow.
//
// Settings (`host.get-config`): see README.md. A malformed setting fails
// every call with `invalid-config` (the gateway fails closed).

import { getConfig, log } from 'wasmgate:policy/host@0.1.0';

/** A deliberate failure: becomes the `err(policy-error)` result. */
class PolicyError extends Error {
  constructor(tag, message) {
    super(message);
    this.payload = { tag, val: message };
  }
}

const invalidConfig = (message) => new PolicyError('invalid-config', message);

/** A string setting, or `fallback` if unset. */
function stringSetting(key, fallback) {
  const raw = getConfig(key);
  return raw === undefined || raw === null ? fallback : raw;
}

/** A list-of-strings setting (the host hands lists over as JSON), or `fallback`. */
function listSetting(key, fallback) {
  const raw = getConfig(key);
  if (raw === undefined || raw === null) return fallback;
  let value;
  try {
    value = JSON.parse(raw);
  } catch {
    throw invalidConfig(`setting ${key}: not a list`);
  }
  if (!Array.isArray(value) || !value.every((v) => typeof v === 'string')) {
    throw invalidConfig(`setting ${key}: must be a list of strings`);
  }
  return value;
}

/** Method patterns: an exact path, or a prefix ending in `*`. */
function parsePatterns(key, patterns) {
  for (const p of patterns) {
    if (!p.startsWith('/') || p.indexOf('*') !== -1 && p.indexOf('*') !== p.length - 1) {
      throw invalidConfig(`setting ${key}: pattern ${JSON.stringify(p)} must start with / and may end in *`);
    }
  }
  return patterns;
}

function matches(pattern, path) {
  return pattern.endsWith('*') ? path.startsWith(pattern.slice(0, -1)) : path === pattern;
}

// Settings never change for the life of an instance: read them once.
let settings;
function loadSettings() {
  if (settings === undefined) {
    const tenantDomain = stringSetting('tenant-domain', null);
    settings = {
      adminRole: stringSetting('admin-role', 'admin'),
      allowedMethods:
        getConfig('allowed-methods') == null ? null : parsePatterns('allowed-methods', listSetting('allowed-methods')),
      wildcardScope: stringSetting('wildcard-scope', 'wasmgate:all'),
      tenantDomain: tenantDomain === null ? null : tenantDomain.replace(/^\.+/, '').toLowerCase(),
    };
    if (settings.adminRole === '') throw invalidConfig('setting admin-role: must not be empty');
  }
  return settings;
}

/** The tenant a call names, or null. */
function namedTenant(call, tenantDomain) {
  const segments = call.path.split('/');
  const i = segments.indexOf('tenants');
  if (i !== -1 && i + 1 < segments.length && segments[i + 1] !== '') {
    return segments[i + 1];
  }
  if (tenantDomain) {
    const host = call.authority.replace(/:\d+$/, '').toLowerCase();
    const suffix = '.' + tenantDomain;
    if (host.endsWith(suffix) && host.length > suffix.length) {
      const label = host.slice(0, -suffix.length);
      if (!label.includes('.')) return label;
    }
  }
  return null;
}

const allow = () => ({ tag: 'allow' });
const deny = (reason) => ({ tag: 'deny', val: reason });

function decide(request) {
  const { call, classification, authentication } = request;
  const s = loadSettings();

  if (classification.class === 'unauthenticated') return allow();
  if (authentication.kind === 'sandbox-secret') {
    return classification.class === 'sandbox-secret' || classification.class === 'dual-auth'
      ? allow()
      : deny(`sandbox secret may not call ${call.path}`);
  }
  if (classification.class === 'sandbox-secret') return deny('method requires the sandbox secret');
  const principal = authentication.principal;
  if (authentication.kind === 'none' || !principal) return deny('no principal');

  if (principal.roles.includes(s.adminRole)) return allow();

  if (s.allowedMethods !== null && !s.allowedMethods.some((p) => matches(p, call.path))) {
    return deny(`method ${call.path} is not allowed`);
  }
  const held = new Set(principal.scopes);
  if (!held.has(s.wildcardScope)) {
    const missing = classification.requiredScopes.find((scope) => !held.has(scope));
    if (missing !== undefined) return deny(`missing scope ${missing}`);
  }
  const tenant = namedTenant(call, s.tenantDomain);
  if (tenant !== null) {
    if (principal.tenant == null) return deny(`principal has no tenant, call names tenant ${tenant}`);
    if (principal.tenant !== tenant) return deny(`tenant ${principal.tenant} may not access tenant ${tenant}`);
  }
  return allow();
}

export const authorizer = {
  authorize(request) {
    try {
      return decide(request);
    } catch (e) {
      if (e instanceof PolicyError) throw e;
      log('error', `js-authorizer: ${e}`);
      throw new PolicyError('internal', 'unexpected error');
    }
  },
};
