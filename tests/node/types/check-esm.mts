// The ESM view of the declarations (index.d.mts), compiled by tests/node/types.test.js.
import Anthropic from '@anthropic-ai/sdk';
import wifDefault, { Provider, doctor, WifError, ExchangeDeniedError, type AccessToken, type DoctorReport, type IdentityTokenSource } from 'anthropic-wif';

const provider = new Provider({ profile: 'ci' });
const client = new Anthropic({ credentials: provider.credentials() });
const token: Promise<AccessToken> = provider.getToken({ forceRefresh: false });
const same: typeof Provider = wifDefault.Provider;
const isWif = (e: unknown): e is WifError => e instanceof WifError;
const denied = (e: unknown): number | null => (e instanceof ExchangeDeniedError ? e.status : null);

const report: Promise<DoctorReport> = doctor({ identityToken: { source: 'kubernetes' } satisfies IdentityTokenSource }, { exchange: false });

export { client, token, same, isWif, denied, report };
