//! Keys, settings and tokens shared by the tests of the `jwt` modules.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self as rsig, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

use super::*;

pub(super) const RSA_PRIVATE_PKCS8: &str = "\
-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCuEIzAHPwQAl+o
ZNFHBvXCPOYCrAc0PhA8t82f/pu2DOG0LKPlny8f2wTPij6xhIRlDVD065X7e6nM
i1xXayGXLahDcwzL/8X3LlGPFKDZsO+bDkk1qivl83JLsYHNrN3L29Lp85iwgOAI
Q4atOBIr+AwwLpTeKSsS+shmbIgc5BROBQNf2h/tH1B85HgfEZ1iunrGUsjyId2+
1gSSp6OCcl0u+AxtXhbz3ylf7XEQzVsT+HVzRn+l/qhLIdRHzDPMijhKAuPoqCYI
PkjhxFP/4iXOE92bmonDySJS49XhLWkQICVXu+7Q5pxgFvfJhSGGXVmJfKgmvFQl
9Ms5MKJPAgMBAAECggEAD1aYAInNUF/VLBKOOnMLju0s24lrLRhW9/K+ZN3bvMQP
03+nhaFsVqNHHj6xXZUu0XTF8H8d/UYdZU/WeEGReS/lxuPJeeR0/l4Pg8sujWBB
DOnKW7c+HQpBxRfEN2qHNOKPCFyV1N/WXgQNRxBM0aEO+ePw7E62Y/rDU/s2V01A
nqhqtCj5bsBa49275JFoKXRwwVdasJ+TIOyXMgMY2VzrrGDVyFn3CJk7YcjNCVl7
0C4Y5mT+5tU9+xES2Hp/TA+yMjdWZv8POz6Nn8w6KKd9p0xDEfCKaD7KDNTe1G3O
aT3AFEa3YSOg9lXvpdm9yS9yIA4k8Ef5p997evpEOQKBgQDa1pJek/h42DwTlZQd
lvzZhUUuiAq/hvZo7gNna8MG2dozSBoe74Cc9SNLlY8tW335L9vkFDUdRli2bTw6
52mJxZi3dx4qAJFRmshqK4lctmkLa5YMfYYSII2X0Mz4osYO3l6nIxAe+KtdJXkY
Ynca9vg9HLEMI/NenkFifXm+IwKBgQDLn5BfWgO3JA69lLOHPwN9H0KTfVtRivx6
gxUDb8HGh3JOGvmrp6JecRdGDTVP+w+V8r5/h4AmOg0EmrESuY9m7r1zFfCI3Sns
7ZSvOExYSLwowbbDaTDHN7ndmPdzMg1Tw7ld2Cpi70g7G6Kd2XNguoRODR8Uyd7Q
68oiXNyP5QKBgGl15H3ds22RT4pkmEeWPu4Y0pk1CHD6en9gzJUnkooXrJbwFV55
LzL00/iV77T9FX1j+gU1U89y2ke35sHASdUSO6GWrxuwwFdiT1kS+BSM95yAUYRd
baIIvBPAlTbxQp9hvJ2xQRCb6AFwkKYWta1x/Xl9/TiLjro3a+0p6OSfAoGAALPC
KbIDxUPokRrMK7E579qFvkB2aieSi1GcZvChuG+LI13QcpkXZD/7lpBBGM+C1D+M
DKCI/pjApr1p0ui05+P230i6FZ69oEWJd7k3+i32CCXy3WWld2pnx63ZXJpVlW5d
W0d9je3JT/rearDvRuwdvK8q5kVz8UB+5/NuB0kCgYEAxctgD0j/SXXQflYNRBrg
cuByFkD7IOOkp+rZ2NAjXui+WDRPbfE/ZrbUAGgs5KqfWRFSjdyE4GIsE4FqmZM2
Z9lQrJfcVCnq9iBMzkeKjioLqC25wL9Bx4dMf278JNWa8uoq1uxdVE0wbONNSjG9
v6PS+rZRz7xitnrUi30PIwM=
-----END PRIVATE KEY-----
";

/// The same RSA key in PKCS#1 form (`openssl rsa -traditional`).
pub(super) const RSA_PRIVATE_PKCS1: &str = "\
-----BEGIN RSA PRIVATE KEY-----
MIIEowIBAAKCAQEArhCMwBz8EAJfqGTRRwb1wjzmAqwHND4QPLfNn/6btgzhtCyj
5Z8vH9sEz4o+sYSEZQ1Q9OuV+3upzItcV2shly2oQ3MMy//F9y5RjxSg2bDvmw5J
Naor5fNyS7GBzazdy9vS6fOYsIDgCEOGrTgSK/gMMC6U3ikrEvrIZmyIHOQUTgUD
X9of7R9QfOR4HxGdYrp6xlLI8iHdvtYEkqejgnJdLvgMbV4W898pX+1xEM1bE/h1
c0Z/pf6oSyHUR8wzzIo4SgLj6KgmCD5I4cRT/+IlzhPdm5qJw8kiUuPV4S1pECAl
V7vu0OacYBb3yYUhhl1ZiXyoJrxUJfTLOTCiTwIDAQABAoIBAA9WmACJzVBf1SwS
jjpzC47tLNuJay0YVvfyvmTd27zED9N/p4WhbFajRx4+sV2VLtF0xfB/Hf1GHWVP
1nhBkXkv5cbjyXnkdP5eD4PLLo1gQQzpylu3Ph0KQcUXxDdqhzTijwhcldTf1l4E
DUcQTNGhDvnj8OxOtmP6w1P7NldNQJ6oarQo+W7AWuPdu+SRaCl0cMFXWrCfkyDs
lzIDGNlc66xg1chZ9wiZO2HIzQlZe9AuGOZk/ubVPfsREth6f0wPsjI3Vmb/Dzs+
jZ/MOiinfadMQxHwimg+ygzU3tRtzmk9wBRGt2EjoPZV76XZvckvciAOJPBH+aff
e3r6RDkCgYEA2taSXpP4eNg8E5WUHZb82YVFLogKv4b2aO4DZ2vDBtnaM0gaHu+A
nPUjS5WPLVt9+S/b5BQ1HUZYtm08OudpicWYt3ceKgCRUZrIaiuJXLZpC2uWDH2G
EiCNl9DM+KLGDt5epyMQHvirXSV5GGJ3Gvb4PRyxDCPzXp5BYn15viMCgYEAy5+Q
X1oDtyQOvZSzhz8DfR9Ck31bUYr8eoMVA2/BxodyThr5q6eiXnEXRg01T/sPlfK+
f4eAJjoNBJqxErmPZu69cxXwiN0p7O2UrzhMWEi8KMG2w2kwxze53Zj3czINU8O5
XdgqYu9IOxuindlzYLqETg0fFMne0OvKIlzcj+UCgYBpdeR93bNtkU+KZJhHlj7u
GNKZNQhw+np/YMyVJ5KKF6yW8BVeeS8y9NP4le+0/RV9Y/oFNVPPctpHt+bBwEnV
Ejuhlq8bsMBXYk9ZEvgUjPecgFGEXW2iCLwTwJU28UKfYbydsUEQm+gBcJCmFrWt
cf15ff04i466N2vtKejknwKBgACzwimyA8VD6JEazCuxOe/ahb5AdmonkotRnGbw
obhviyNd0HKZF2Q/+5aQQRjPgtQ/jAygiP6YwKa9adLotOfj9t9IuhWevaBFiXe5
N/ot9ggl8t1lpXdqZ8et2VyaVZVuXVtHfY3tyU/63mqw70bsHbyvKuZFc/FAfufz
bgdJAoGBAMXLYA9I/0l10H5WDUQa4HLgchZA+yDjpKfq2djQI17ovlg0T23xP2a2
1ABoLOSqn1kRUo3chOBiLBOBapmTNmfZUKyX3FQp6vYgTM5Hio4qC6gtucC/QceH
TH9u/CTVmvLqKtbsXVRNMGzjTUoxvb+j0vq2Uc+8YrZ61It9DyMD
-----END RSA PRIVATE KEY-----
";

/// The public half of the RSA test key (SubjectPublicKeyInfo).
pub(super) const RSA_PUBLIC: &str = "\
-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEArhCMwBz8EAJfqGTRRwb1
wjzmAqwHND4QPLfNn/6btgzhtCyj5Z8vH9sEz4o+sYSEZQ1Q9OuV+3upzItcV2sh
ly2oQ3MMy//F9y5RjxSg2bDvmw5JNaor5fNyS7GBzazdy9vS6fOYsIDgCEOGrTgS
K/gMMC6U3ikrEvrIZmyIHOQUTgUDX9of7R9QfOR4HxGdYrp6xlLI8iHdvtYEkqej
gnJdLvgMbV4W898pX+1xEM1bE/h1c0Z/pf6oSyHUR8wzzIo4SgLj6KgmCD5I4cRT
/+IlzhPdm5qJw8kiUuPV4S1pECAlV7vu0OacYBb3yYUhhl1ZiXyoJrxUJfTLOTCi
TwIDAQAB
-----END PUBLIC KEY-----
";

pub(super) const ISSUER: &str = "https://tollgate.test";
pub(super) const HS_SECRET: &str = "0123456789abcdef0123456789abcdef-test-secret";
pub(super) const NOW: u64 = 1_700_000_000;
pub(super) const LEEWAY: u64 = 30;

pub(super) fn pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Returns a freshly generated P-256 key as (private PKCS#8 PEM, public SPKI PEM).
pub(super) fn es256_pems() -> (String, String) {
    let rng = SystemRandom::new();
    let doc = rsig::EcdsaKeyPair::generate_pkcs8(&rsig::ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("generate p-256");
    let pair =
        rsig::EcdsaKeyPair::from_pkcs8(&rsig::ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref()).expect("parse p-256");
    // SubjectPublicKeyInfo prefix for id-ecPublicKey + prime256v1.
    let mut spki = vec![
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48,
        0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
    ];
    spki.extend_from_slice(pair.public_key().as_ref());
    (pem("PRIVATE KEY", doc.as_ref()), pem("PUBLIC KEY", &spki))
}

/// Returns the public SPKI PEM for an Ed25519 PKCS#8 PEM.
pub(super) fn ed25519_public_pem(private_pem: &str) -> String {
    let key = jsonwebtoken::EncodingKey::from_ed_pem(private_pem.as_bytes()).expect("ed pem");
    let pair = rsig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(key.inner()).expect("ed key");
    let mut spki = vec![0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];
    spki.extend_from_slice(pair.public_key().as_ref());
    pem("PUBLIC KEY", &spki)
}

pub(super) fn hs_key(kid: &str) -> JwtKeyConfig {
    JwtKeyConfig { kid: kid.into(), alg: JwtAlg::HS256, secret: Some(HS_SECRET.into()), ..Default::default() }
}

pub(super) fn rsa_key(kid: &str) -> JwtKeyConfig {
    JwtKeyConfig {
        kid: kid.into(),
        alg: JwtAlg::RS256,
        private_key_pem: Some(RSA_PRIVATE_PKCS8.into()),
        public_key_pem: Some(RSA_PUBLIC.into()),
        ..Default::default()
    }
}

pub(super) fn es_key(kid: &str) -> JwtKeyConfig {
    let (private, public) = es256_pems();
    JwtKeyConfig {
        kid: kid.into(),
        alg: JwtAlg::ES256,
        private_key_pem: Some(private),
        public_key_pem: Some(public),
        ..Default::default()
    }
}

pub(super) fn ed_key(kid: &str) -> JwtKeyConfig {
    let private = JwtKeys::generate_ed25519_pkcs8_pem();
    let public = ed25519_public_pem(&private);
    JwtKeyConfig {
        kid: kid.into(),
        alg: JwtAlg::EdDSA,
        private_key_pem: Some(private),
        public_key_pem: Some(public),
        ..Default::default()
    }
}

pub(super) fn settings(signing_kid: &str, keys: Vec<JwtKeyConfig>) -> JwtSettings {
    JwtSettings {
        issuer: ISSUER.into(),
        audience: None,
        leeway_secs: LEEWAY,
        ttl_secs: 900,
        max_lifetime_secs: 86_400,
        max_token_bytes: 4096,
        cache_capacity: 1024,
        signing_kid: signing_kid.into(),
        keys,
    }
}

pub(super) fn keys_with(key: JwtKeyConfig) -> JwtKeys {
    let kid = key.kid.clone();
    JwtKeys::new(&settings(&kid, vec![key])).expect("valid settings")
}

pub(super) fn claims() -> Claims {
    Claims {
        iss: ISSUER.into(),
        sub: "user-42".into(),
        aud: None,
        iat: NOW,
        iat_ms: None,
        exp: NOW + 900,
        nbf: NOW,
        jti: "jti-1".into(),
        prv: "github".into(),
        team: "team-7".into(),
        roles: vec!["admin".into(), "dev".into()],
        subscription: "pro".into(),
        key: None,
    }
}

pub(super) fn b64(s: &str) -> String {
    URL_SAFE_NO_PAD.encode(s)
}

/// Builds an HS256-signed token from raw header and payload JSON.
pub(super) fn hs_token(secret: &[u8], header: &str, payload: &str) -> String {
    let input = format!("{}.{}", b64(header), b64(payload));
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    let sig = aws_lc_rs::hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
}

pub(super) const HS_HEADER: &str = r#"{"alg":"HS256","typ":"JWT","kid":"hs"}"#;

pub(super) fn claims_json() -> serde_json::Value {
    serde_json::to_value(claims()).expect("claims json")
}
